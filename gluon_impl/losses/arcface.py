"""ArcFace (Gluon twin of pytorch_impl/losses/arcface.py)."""

from __future__ import annotations

import math

from .base import Bool, MarginSoftmax, Real, register_loss

SIN_EPS = 1e-7


def arc_margin(F, cos, margin: float, easy_margin: bool):
    """See ``pytorch_impl.losses.arcface.arc_margin``."""
    sin = F.sqrt(F.maximum(1.0 - cos * cos, SIN_EPS))
    target = cos * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        return F.where(cos > 0.0, target, cos)
    return F.where(cos < math.cos(math.pi - margin), cos - margin * math.sin(margin), target)


@register_loss("arcface")
class ArcFace(MarginSoftmax):
    """See ``pytorch_impl.losses.arcface.ArcFace``."""

    ranges = {"margin": Real(0.0, math.pi, hi_open=True), "easy_margin": Bool()}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.5, easy_margin: bool = False):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin,
                         easy_margin=easy_margin)

    def target_logit(self, F, cos, **params):
        return arc_margin(F, cos, self.margin, self.easy_margin)
