"""Combined margin (Gluon twin of pytorch_impl/losses/combined.py)."""

from __future__ import annotations

import math

from .. import ops
from .arcface import arc_margin
from .base import MarginSoftmax, check_real, register_loss

ACOS_EPS = 1e-7


@register_loss("combined")
class Combined(MarginSoftmax):
    """See ``pytorch_impl.losses.combined.Combined``."""

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0,
                 m1: float = 1.0, m2: float = 0.3, m3: float = 0.2):
        super().__init__(num_classes, embedding_size, scale=scale)
        owner = type(self).__name__
        self.m1 = check_real(owner, "m1", m1, 0.0, 10.0, lo_open=True)
        self.m2 = check_real(owner, "m2", m2, 0.0, math.pi, hi_open=True)
        self.m3 = check_real(owner, "m3", m3, 0.0, 2.0, hi_open=True)

    def target_logit(self, F, cos, **params):
        if self.m1 == 1.0:
            return arc_margin(F, cos, self.m2, False) - self.m3
        theta = F.arccos(ops.clamp_st(F, cos, -1.0 + ACOS_EPS, 1.0 - ACOS_EPS))
        return F.cos(self.m1 * theta + self.m2) - self.m3
