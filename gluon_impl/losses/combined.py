"""Combined margin (Gluon twin of pytorch_impl/losses/combined.py)."""

from __future__ import annotations

import math

from .. import ops
from .arcface import arc_margin
from .base import MarginSoftmax, Real, register_loss

ACOS_EPS = 1e-7


@register_loss("combined")
class Combined(MarginSoftmax):
    """See ``pytorch_impl.losses.combined.Combined``."""

    ranges = {"m1": Real(0.0, 10.0, lo_open=True), "m2": Real(0.0, math.pi, hi_open=True),
              "m3": Real(0.0, 2.0, hi_open=True)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 m1: float = 1.0, m2: float = 0.3, m3: float = 0.2):
        super().__init__(num_classes, embedding_size, scale=scale, m1=m1, m2=m2, m3=m3)

    def target_logit(self, F, cos, **params):
        if self.m1 == 1.0:
            return arc_margin(F, cos, self.m2, False) - self.m3
        theta = F.arccos(ops.clamp_st(F, cos, -1.0 + ACOS_EPS, 1.0 - ACOS_EPS))
        return F.cos(self.m1 * theta + self.m2) - self.m3
