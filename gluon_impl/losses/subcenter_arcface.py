"""Sub-center ArcFace (Gluon twin of pytorch_impl/losses/subcenter_arcface.py)."""

from __future__ import annotations

import math

from .. import ops
from .arcface import arc_margin
from .base import Int, Real, SoftmaxHead, register_loss


@register_loss("subcenter_arcface")
class SubCenterArcFace(SoftmaxHead):
    """See ``pytorch_impl.losses.subcenter_arcface.SubCenterArcFace`` (``weight`` K C x D,
    class-major)."""

    ranges = {"margin": Real(0.0, math.pi, hi_open=True), "sub_centers": Int(1, 64)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.5, sub_centers: int = 3):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin,
                         sub_centers=sub_centers)

    rows_per_class = property(lambda self: self.sub_centers)

    def hybrid_forward(self, F, x, labels, weight):
        s, rows = self.scale, self.num_classes * self.sub_centers
        logits = F.FullyConnected(ops.l2_normalize(F, x, s), ops.l2_normalize(F, weight),
                                  no_bias=True, num_hidden=rows)
        logits = F.reshape(logits, shape=(0, self.num_classes, self.sub_centers))
        best = F.argmax(F.stop_gradient(logits), axis=2)
        logits = F.pick(logits, best, axis=2)  # s max_k cos_{j,k}
        cos_y = ops.clamp_st(F, ops.gather_target(F, logits, labels) / s, -1.0, 1.0)
        target = s * arc_margin(F, cos_y, self.margin, easy_margin=False)
        logits = ops.replace_target(F, logits, labels, target, self.num_classes)
        return F.mean(-F.pick(F.log_softmax(logits, axis=1), labels, axis=1))
