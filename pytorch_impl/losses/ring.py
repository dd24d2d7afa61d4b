"""Ring loss (Zheng, Pal, Savvides, CVPR 2018): softmax CE + lambda/2 mean_i (|x_i| - R)^2."""

from __future__ import annotations

import torch
from torch import nn

from .. import ops
from .base import AuxTerm, JointLoss, Real, register_aux, register_loss
from .softmax import Softmax


@register_aux("ring")
class RingTerm(AuxTerm):
    """1/2 mean_i (|x_i| - R)^2 with R (``radius``, shape (1,)) learned by the optimiser;
    the hyper-parameter ``radius`` is R's initial value."""

    state_names = ("radius",)
    ranges = {"radius": Real(0.0, 1e6)}

    def __init__(self, num_classes: int, embedding_size: int, radius: float = 1.0):
        super().__init__(num_classes, embedding_size, radius=radius)
        self.radius = nn.Parameter(torch.full((1,), self.radius))

    def forward(self, x, labels):
        gap = ops.row_norm(x) - self.radius.to(x.dtype)
        return 0.5 * (gap * gap).mean()


@register_loss("ring")
class Ring(JointLoss):
    """Softmax + lambda_ x Ring; the defaults (lambda_, radius) are JointLoss's and
    RingTerm's signatures'."""

    base_cls = Softmax
    aux_cls = RingTerm
