"""MagFace (Meng, Zhao, Huang, Hu, CVPR 2021, arXiv:2103.06627)."""

from __future__ import annotations

import math

import torch

from .. import ops
from .arcface import SIN_EPS
from .base import MarginSoftmax, check_real, register_loss


@register_loss("magface")
class MagFace(MarginSoftmax):
    """ArcFace whose margin grows with the feature magnitude a = clamp(|x|, l_a, u_a):

    m(a) = (u_m - l_m) / (u_a - l_a) (a - l_a) + l_m (radians); target s cos(theta_y + m(a))
    with ArcFace's fallback cos - m(a) sin(m(a)) where theta + m(a) > pi; plus
    lambda_g mean_i g(a_i), g(a) = 1/a + a/u_a^2. The gradient flows through a (and m(a)).
    """

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

    def compute(self, x, labels):
        norm = ops.row_norm(x)  # one |x| for the regulariser and the head's margin
        a = self.magnitude(norm)
        regulariser = (1.0 / a + a / (self.upper_norm * self.upper_norm)).mean()
        return self.head(x, labels, norm) + self.lambda_g * regulariser
