"""Batch-hard triplet loss (Gluon twin of pytorch_impl/losses/triplet.py)."""

from __future__ import annotations

from .. import ops
from .base import Loss, Real, register_loss


@register_loss("triplet")
class Triplet(Loss):
    """See ``pytorch_impl.losses.triplet.Triplet``."""

    requires_pk_batches = True
    ranges = {"margin": Real(0.0, 4.0)}

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.3):
        super().__init__(num_classes, embedding_size, margin=margin)

    def hybrid_forward(self, F, x, labels):
        xn = ops.l2_normalize(F, x)
        dist = F.maximum(2.0 - 2.0 * F.dot(xn, xn, transpose_b=True), 0.0)
        pos, neg = ops.pair_masks(F, labels)
        d_ap = F.max(F.where(pos, dist, dist * 0.0 - 1.0), axis=1)
        d_an = F.min(F.where(neg, dist, dist * 0.0 + 5.0), axis=1)
        valid = F.max(pos, axis=1) * F.max(neg, axis=1)
        per_anchor = F.relu(d_ap - d_an + self.margin)
        per_anchor = F.where(valid, per_anchor, per_anchor * 0.0)
        return F.sum(per_anchor) / F.maximum(F.sum(valid), 1.0)
