"""Sub-center ArcFace (Deng, Guo, Liu, Gong, Zafeiriou, ECCV 2020, "Sub-center ArcFace:
Boosting Face Recognition by Large-Scale Noisy Web Faces")."""

from __future__ import annotations

import math

import torch

from .. import ops
from .arcface import arc_margin
from .base import Int, Real, SoftmaxHead, register_loss


@register_loss("subcenter_arcface")
class SubCenterArcFace(SoftmaxHead):
    """ArcFace on the closest of K sub-centres of each class:

    cos_j = max_k <x^, W^_{j,k}>, target s cos(theta_y + m) with ArcFace's fallback
    cos - m sin(m) where theta_y + m > pi (``arcface.arc_margin``), others s cos_j, mean CE;
    ``margin`` m in radians, [0, pi); ``sub_centers`` K, 3 in the paper.

    ``weight`` has K C rows (K C x D), class-major as InsightFace's fc7 (row j K + k is
    sub-centre k of class j; ``weight.reshape(C, K, D)``), so the predicted class of
    argmax_r <x^, W^_r> is r // K. The max passes its gradient to the arg-max sub-centre only
    (first one on ties, in both backends). Not a ``MarginSoftmax``: that fused head assumes
    one weight row per class; Partial FC shards it through ``scaled_class_logits`` and
    ``target_logit`` (``rows_per_class`` = K rows per class stay on one rank).
    """

    ranges = {"margin": Real(0.0, math.pi, hi_open=True), "sub_centers": Int(1, 64)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.5, sub_centers: int = 3):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin,
                         sub_centers=sub_centers)

    def compute(self, x, labels):
        s = self.scale
        logits = self.scaled_class_logits(x, self.weight)
        target = s * self.target_logit(ops.gather_target(logits, labels) / s)
        logits = logits.scatter(1, labels[:, None], target[:, None])
        return (torch.logsumexp(logits, dim=1) - target).mean()

    rows_per_class = property(lambda self: self.sub_centers)

    def scaled_class_logits(self, x, weight):
        """s max_k cos(x, W_{j,k}) for the classes whose K rows each ``weight`` holds."""
        logits = super().scaled_class_logits(x, weight)
        logits = logits.reshape(x.shape[0], -1, self.sub_centers)
        best = logits.detach().argmax(dim=2, keepdim=True)
        return logits.gather(2, best)[:, :, 0]

    def target_logit(self, cos_y):
        return arc_margin(ops.clamp_st(cos_y, -1.0, 1.0), self.margin, easy_margin=False)
