"""Combined margin of InsightFace (Deng et al. 2019, section 3.3): m1 angular-multiplicative,
m2 additive angular, m3 additive cosine."""

from __future__ import annotations

import math

import torch

from .. import ops
from .arcface import arc_margin
from .base import MarginSoftmax, Real, register_loss

ACOS_EPS = 1e-7


@register_loss("combined")
class Combined(MarginSoftmax):
    """Target logit s (cos(m1 theta_y + m2) - m3), others s cos_j; m2 in radians.

    For m1 = 1 this is ArcFace(m2) with its theta + m2 > pi fallback, minus m3; for m1 != 1,
    theta = acos(clamp(cos, -1 + 1e-7, 1 - 1e-7)) and no fallback (SPEC.md section 1).
    """

    ranges = {"m1": Real(0.0, 10.0, lo_open=True), "m2": Real(0.0, math.pi, hi_open=True),
              "m3": Real(0.0, 2.0, hi_open=True)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 m1: float = 1.0, m2: float = 0.3, m3: float = 0.2):
        super().__init__(num_classes, embedding_size, scale=scale, m1=m1, m2=m2, m3=m3)

    def target_logit(self, cos):
        if self.m1 == 1.0:
            return arc_margin(cos, self.m2, False) - self.m3
        theta = torch.arccos(ops.clamp_st(cos, -1.0 + ACOS_EPS, 1.0 - ACOS_EPS))
        return torch.cos(self.m1 * theta + self.m2) - self.m3
