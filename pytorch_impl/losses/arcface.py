"""ArcFace / additive angular margin (Deng, Guo, Xue, Zafeiriou 2019, arXiv:1801.07698)."""

from __future__ import annotations

import math

import torch

from .base import Bool, MarginSoftmax, Real, register_loss

SIN_EPS = 1e-7


def arc_margin(cos, margin: float, easy_margin: bool):
    """cos(theta + m) with the fallback of ``ArcFace`` (shared with ``Combined``)."""
    sin = torch.sqrt(torch.clamp_min(1.0 - cos * cos, SIN_EPS))
    target = cos * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        return torch.where(cos > 0.0, target, cos)
    return torch.where(cos < math.cos(math.pi - margin), cos - margin * math.sin(margin), target)


@register_loss("arcface")
class ArcFace(MarginSoftmax):
    """Target logit s cos(theta_y + m), others s cos_j; ``margin`` m in radians, [0, pi).

    cos(theta + m) = cos cos(m) - sin sin(m), sin = sqrt(max(1 - cos^2, 1e-7)). Where
    theta + m > pi (cos < cos(pi - m)) the target is cos - m sin(m) instead, so it stays
    monotone in theta; ``easy_margin=True`` keeps cos wherever cos <= 0 instead.
    """

    ranges = {"margin": Real(0.0, math.pi, hi_open=True), "easy_margin": Bool()}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.5, easy_margin: bool = False):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin,
                         easy_margin=easy_margin)

    def target_logit(self, cos):
        return arc_margin(cos, self.margin, self.easy_margin)
