"""MagFace (Gluon twin of pytorch_impl/losses/magface.py)."""

from __future__ import annotations

import math

from .. import ops
from .arcface import SIN_EPS
from .base import MarginSoftmax, Real, register_loss


@register_loss("magface")
class MagFace(MarginSoftmax):
    """See ``pytorch_impl.losses.magface.MagFace``."""

    uses_norm = True
    ranges = {"lower_norm": Real(0.0, 1e6, lo_open=True),
              "upper_norm": Real("lower_norm", 1e6, lo_open=True),
              "lower_margin": Real(0.0, math.pi, hi_open=True),
              "upper_margin": Real("lower_margin", math.pi, hi_open=True),
              "lambda_g": Real(0.0, 1e6)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 lower_norm: float = 10.0, upper_norm: float = 110.0,
                 lower_margin: float = 0.45, upper_margin: float = 0.8, lambda_g: float = 35.0):
        super().__init__(num_classes, embedding_size, scale=scale, lower_norm=lower_norm,
                         upper_norm=upper_norm, lower_margin=lower_margin,
                         upper_margin=upper_margin, lambda_g=lambda_g)

    def magnitude(self, F, norm):
        return ops.clip(F, norm, self.lower_norm, self.upper_norm)

    def margin(self, F, norm):
        slope = (self.upper_margin - self.lower_margin) / (self.upper_norm - self.lower_norm)
        return slope * (self.magnitude(F, norm) - self.lower_norm) + self.lower_margin

    def target_logit(self, F, cos, norm, **params):
        m = self.margin(F, norm)
        cos_m, sin_m = F.cos(m), F.sin(m)
        sin = F.sqrt(F.maximum(1.0 - cos * cos, SIN_EPS))
        # theta + m > pi  <=>  cos theta < cos(pi - m) = -cos m
        return F.where(cos < -cos_m, cos - m * sin_m, cos * cos_m - sin * sin_m)

    def penalty(self, F, x, norm):
        """See ``pytorch_impl.losses.magface.MagFace.penalty``."""
        a = self.magnitude(F, norm)
        return self.lambda_g * F.mean(1.0 / a + a / (self.upper_norm * self.upper_norm))
