"""Ring loss (Zheng, Pal, Savvides, CVPR 2018): softmax CE + lambda/2 mean_i (|x_i| - R)^2."""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .base import AuxTerm, JointLoss, check_real, register_loss
from .softmax import Softmax


class RingTerm(AuxTerm):
    """1/2 mean_i (|x_i| - R)^2 with R (``radius``, shape (1,)) learned by the optimiser."""

    state_names = ("radius",)

    def __init__(self, num_classes: int, embedding_size: int, radius: float = 1.0):
        super().__init__()
        value = check_real(type(self).__name__, "radius", radius, 0.0, 1e6)
        self.radius = nn.Parameter(torch.full((1,), value))

    @classmethod
    def hyperparameters(cls) -> dict:
        return {"radius": 1.0}

    def forward(self, x, labels):
        gap = ops.row_norm(x) - self.radius.to(x.dtype)
        return 0.5 * (gap * gap).mean()

    def state_items(self):
        return {"radius": self.radius}


@register_loss("ring")
class Ring(JointLoss):
    """Softmax + lambda_ x Ring; ``radius`` is R's initial value."""

    base_cls = Softmax
    aux_cls = RingTerm

    def __init__(self, num_classes: int, embedding_size: int, lambda_: float = 0.01,
                 radius: float = 1.0):
        super().__init__(num_classes, embedding_size, lambda_=lambda_, radius=radius)
