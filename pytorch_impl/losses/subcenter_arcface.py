"""Sub-center ArcFace (Deng, Guo, Liu, Gong, Zafeiriou, ECCV 2020, "Sub-center ArcFace:
Boosting Face Recognition by Large-Scale Noisy Web Faces")."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import ops
from .arcface import arc_margin
from .base import Loss, check_int, check_real, register_loss


@register_loss("subcenter_arcface")
class SubCenterArcFace(Loss):
    """ArcFace on the closest of K sub-centres of each class:

    cos_j = max_k <x^, W^_{j,k}>, target s cos(theta_y + m) with ArcFace's fallback
    cos - m sin(m) where theta_y + m > pi (``arcface.arc_margin``), others s cos_j, mean CE;
    ``margin`` m in radians, [0, pi); ``sub_centers`` K, 3 in the paper.

    ``weight`` has K C rows (K C x D), class-major as InsightFace's fc7 (row j K + k is
    sub-centre k of class j; ``weight.reshape(C, K, D)``), so the predicted class of
    argmax_r <x^, W^_r> is r // K. The max passes its gradient to the arg-max sub-centre only
    (first one on ties, in both backends). Not a ``MarginSoftmax``: that fused head, and
    Partial FC which shards it, assume one weight row per class.
    """

    softmax_family = True
    normalize_weight = True
    state_names = ("weight",)

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0,
                 margin: float = 0.5, sub_centers: int = 3):
        super().__init__(num_classes, embedding_size)
        owner = type(self).__name__
        self.scale = check_real(owner, "scale", scale, 0.0, 1e6, lo_open=True)
        self.margin = check_real(owner, "margin", margin, 0.0, math.pi, hi_open=True)
        self.sub_centers = check_int(owner, "sub_centers", sub_centers, 1, 64)
        self.weight = nn.Parameter(torch.empty(num_classes * self.sub_centers, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def compute(self, x, labels):
        s = self.scale
        xs = x * (s / ops.row_norm(x))[:, None]  # the scale on the B x D side of the GEMM
        logits = xs @ ops.l2_normalize(self.weight.to(x.dtype)).t()
        logits = logits.reshape(x.shape[0], self.num_classes, self.sub_centers)
        best = logits.detach().argmax(dim=2, keepdim=True)
        logits = logits.gather(2, best)[:, :, 0]  # s max_k cos_{j,k}
        cos_y = ops.clamp_st(ops.gather_target(logits, labels) / s, -1.0, 1.0)
        target = s * arc_margin(cos_y, self.margin, easy_margin=False)
        logits = logits.scatter(1, labels[:, None], target[:, None])
        return (torch.logsumexp(logits, dim=1) - target).mean()
