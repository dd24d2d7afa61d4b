"""MagFace (Meng, Zhao, Huang, Hu, CVPR 2021, arXiv:2103.06627)."""

from __future__ import annotations

import math

import torch

from .. import ops
from .arcface import SIN_EPS
from .base import MarginSoftmax, Real, register_loss


@register_loss("magface")
class MagFace(MarginSoftmax):
    """ArcFace whose margin grows with the feature magnitude a = clamp(|x|, l_a, u_a):

    m(a) = (u_m - l_m) / (u_a - l_a) (a - l_a) + l_m (radians); target s cos(theta_y + m(a))
    with ArcFace's fallback cos - m(a) sin(m(a)) where theta + m(a) > pi; plus
    lambda_g mean_i g(a_i), g(a) = 1/a + a/u_a^2. The gradient flows through a (and m(a)).
    """

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

    def magnitude(self, norm):
        return ops.clip(norm, self.lower_norm, self.upper_norm)

    def margin(self, norm):
        slope = (self.upper_margin - self.lower_margin) / (self.upper_norm - self.lower_norm)
        return slope * (self.magnitude(norm) - self.lower_norm) + self.lower_margin

    def target_logit(self, cos, norm):
        m = self.margin(norm)
        cos_m, sin_m = torch.cos(m), torch.sin(m)
        sin = torch.sqrt(torch.clamp_min(1.0 - cos * cos, SIN_EPS))
        # theta + m > pi  <=>  cos theta < cos(pi - m) = -cos m
        return torch.where(cos < -cos_m, cos - m * sin_m, cos * cos_m - sin * sin_m)

    def penalty(self, x, norm):
        """lambda_g mean_i g(a_i), from the |x| the head's margin uses too."""
        a = self.magnitude(norm)
        return self.lambda_g * (1.0 / a + a / (self.upper_norm * self.upper_norm)).mean()
