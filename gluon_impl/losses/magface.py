"""MagFace (Gluon twin of pytorch_impl/losses/magface.py)."""

from __future__ import annotations

import math

from .. import ops
from .arcface import SIN_EPS
from .base import MarginSoftmax, check_real, register_loss


@register_loss("magface")
class MagFace(MarginSoftmax):
    """See ``pytorch_impl.losses.magface.MagFace``."""

    uses_norm = True

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0,
                 lower_norm: float = 10.0, upper_norm: float = 110.0,
                 lower_margin: float = 0.45, upper_margin: float = 0.8, lambda_g: float = 35.0):
        super().__init__(num_classes, embedding_size, scale=scale)
        owner = type(self).__name__
        self.lower_norm = check_real(owner, "lower_norm", lower_norm, 0.0, 1e6, lo_open=True)
        self.upper_norm = check_real(owner, "upper_norm", upper_norm, self.lower_norm, 1e6,
                                     lo_open=True)
        self.lower_margin = check_real(owner, "lower_margin", lower_margin, 0.0, math.pi,
                                       hi_open=True)
        self.upper_margin = check_real(owner, "upper_margin", upper_margin, self.lower_margin,
                                       math.pi, hi_open=True)
        self.lambda_g = check_real(owner, "lambda_g", lambda_g, 0.0, 1e6)

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

    def hybrid_forward(self, F, x, labels, weight, **params):
        norm = ops.row_norm(F, x)  # one |x| for the regulariser and the head's margin
        a = self.magnitude(F, norm)
        regulariser = F.mean(1.0 / a + a / (self.upper_norm * self.upper_norm))
        head = self.head(F, x, labels, weight, norm, **params)
        return head + self.lambda_g * regulariser
