"""Triplet loss, batch-hard (Schroff et al. 2015 FaceNet; Hermans et al. 2017 batch-hard)."""

from __future__ import annotations

import torch

from .. import ops
from .base import Loss, Real, register_loss


@register_loss("triplet")
class Triplet(Loss):
    """mean over anchors with a positive and a negative of max(0, d_ap - d_an + margin).

    d = |x^_i - x^_j|^2 = 2 - 2 <x^_i, x^_j> (squared L2 on normalised rows); d_ap the
    largest over same-label j != i, d_an the smallest over other labels. 0 if no anchor has both.
    """

    requires_pk_batches = True
    ranges = {"margin": Real(0.0, 4.0)}

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.3):
        super().__init__(num_classes, embedding_size, margin=margin)

    def compute(self, x, labels):
        xn = ops.l2_normalize(x)
        dist = torch.clamp_min(2.0 - 2.0 * (xn @ xn.t()), 0.0)
        pos, neg = ops.pair_masks(labels)
        # fill values outside [0, 4] so they never win; rows lacking one are dropped by `valid`
        d_ap = torch.where(pos, dist, dist * 0.0 - 1.0).amax(dim=1)
        d_an = torch.where(neg, dist, dist * 0.0 + 5.0).amin(dim=1)
        valid = pos.any(dim=1) & neg.any(dim=1)
        per_anchor = torch.relu(d_ap - d_an + self.margin)
        per_anchor = torch.where(valid, per_anchor, per_anchor * 0.0)
        return per_anchor.sum() / torch.clamp_min(valid.sum(), 1).to(x.dtype)
