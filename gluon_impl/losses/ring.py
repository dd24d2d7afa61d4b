"""Ring loss (Gluon twin of pytorch_impl/losses/ring.py)."""

from __future__ import annotations

import mxnet as mx

from .. import ops
from .base import AuxTerm, JointLoss, check_real, register_loss
from .softmax import Softmax


class RingTerm(AuxTerm):
    """See ``pytorch_impl.losses.ring.RingTerm``."""

    state_names = ("radius",)

    def __init__(self, num_classes: int, embedding_size: int, radius: float = 1.0):
        super().__init__()
        value = check_real(type(self).__name__, "radius", radius, 0.0, 1e6)
        self.radius = self.params.get("radius", shape=(1,), init=mx.init.Constant(value))

    @classmethod
    def hyperparameters(cls) -> dict:
        return {"radius": 1.0}

    def hybrid_forward(self, F, x, labels, radius):
        gap = F.broadcast_sub(ops.row_norm(F, x), radius)
        return 0.5 * F.mean(gap * gap)


@register_loss("ring")
class Ring(JointLoss):
    """See ``pytorch_impl.losses.ring.Ring``."""

    base_cls = Softmax
    aux_cls = RingTerm

    def __init__(self, num_classes: int, embedding_size: int, lambda_: float = 0.01,
                 radius: float = 1.0):
        super().__init__(num_classes, embedding_size, lambda_=lambda_, radius=radius)
