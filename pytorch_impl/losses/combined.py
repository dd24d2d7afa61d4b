"""Combined margin of InsightFace (Deng et al. 2019, section 3.3): m1 angular-multiplicative,
m2 additive angular, m3 additive cosine."""

from __future__ import annotations

import math

import torch

from .. import ops
from .arcface import arc_margin
from .base import MarginSoftmax, check_real, register_loss

ACOS_EPS = 1e-7


@register_loss("combined")
class Combined(MarginSoftmax):
    """Target logit s (cos(m1 theta_y + m2) - m3), others s cos_j; m2 in radians.

    For m1 = 1 this is ArcFace(m2) with its theta + m2 > pi fallback, minus m3; for m1 != 1,
    theta = acos(clamp(cos, -1 + 1e-7, 1 - 1e-7)) and no fallback (SPEC.md section 1).
    """

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0,
                 m1: float = 1.0, m2: float = 0.3, m3: float = 0.2):
        super().__init__(num_classes, embedding_size, scale=scale)
        owner = type(self).__name__
        self.m1 = check_real(owner, "m1", m1, 0.0, 10.0, lo_open=True)
        self.m2 = check_real(owner, "m2", m2, 0.0, math.pi, hi_open=True)
        self.m3 = check_real(owner, "m3", m3, 0.0, 2.0, hi_open=True)

    def target_logit(self, cos):
        if self.m1 == 1.0:
            return arc_margin(cos, self.m2, False) - self.m3
        theta = torch.arccos(ops.clamp_st(cos, -1.0 + ACOS_EPS, 1.0 - ACOS_EPS))
        return torch.cos(self.m1 * theta + self.m2) - self.m3
