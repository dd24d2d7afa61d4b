"""Contrastive loss (Gluon twin of pytorch_impl/losses/contrastive.py)."""

from __future__ import annotations

from .. import ops
from .base import Loss, Real, register_loss

DIST_EPS_SQ = 1e-12


@register_loss("contrastive")
class Contrastive(Loss):
    """See ``pytorch_impl.losses.contrastive.Contrastive``."""

    requires_pk_batches = True
    ranges = {"margin": Real(0.0, 2.0, lo_open=True)}

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 1.0):
        super().__init__(num_classes, embedding_size, margin=margin)

    def hybrid_forward(self, F, x, labels):
        xn = ops.l2_normalize(F, x)
        dist_sq = F.maximum(2.0 - 2.0 * F.dot(xn, xn, transpose_b=True), 0.0)
        dist = F.sqrt(F.maximum(dist_sq, DIST_EPS_SQ))
        pos, neg = ops.pair_masks(F, labels)
        upper = ops.upper_pairs(F, labels)
        hinge = F.relu(self.margin - dist)
        terms = F.where(pos, dist_sq, hinge * hinge)
        terms = F.where(upper, terms, terms * 0.0)
        # number of pairs B(B-1)/2 from the graph, so it works hybridized
        count = F.sum(upper)
        return F.sum(terms) / F.maximum(count, 1.0)
