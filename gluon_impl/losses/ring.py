"""Ring loss (Gluon twin of pytorch_impl/losses/ring.py)."""

from __future__ import annotations

import mxnet as mx

from .. import ops
from .base import AuxTerm, JointLoss, Real, register_aux, register_loss
from .softmax import Softmax


@register_aux("ring")
class RingTerm(AuxTerm):
    """See ``pytorch_impl.losses.ring.RingTerm``."""

    state_names = ("radius",)
    ranges = {"radius": Real(0.0, 1e6)}

    def __init__(self, num_classes: int, embedding_size: int, radius: float = 1.0):
        super().__init__(num_classes, embedding_size, radius=radius)
        self.radius = self.params.get("radius", shape=(1,), init=mx.init.Constant(self.radius))

    def hybrid_forward(self, F, x, labels, radius):
        gap = F.broadcast_sub(ops.row_norm(F, x), radius)
        return 0.5 * F.mean(gap * gap)


@register_loss("ring")
class Ring(JointLoss):
    """See ``pytorch_impl.losses.ring.Ring``."""

    base_cls = Softmax
    aux_cls = RingTerm
