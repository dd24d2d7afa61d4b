"""Contrastive loss (Hadsell, Chopra, LeCun, CVPR 2006) over all pairs of the batch."""

from __future__ import annotations

import torch

from .. import ops
from .base import Loss, Real, register_loss

DIST_EPS_SQ = 1e-12  # d = sqrt(max(d^2, 1e-12)): finite gradient for coincident pairs


@register_loss("contrastive")
class Contrastive(Loss):
    """mean over pairs i < j of d^2 (same label) or max(0, margin - d)^2 (different labels),
    d = |x^_i - x^_j| (L2 on normalised rows, d^2 = 2 - 2 <x^_i, x^_j>); 0 for a batch of one."""

    requires_pk_batches = True
    ranges = {"margin": Real(0.0, 2.0, lo_open=True)}

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 1.0):
        super().__init__(num_classes, embedding_size, margin=margin)

    def compute(self, x, labels):
        xn = ops.l2_normalize(x)
        dist_sq = torch.clamp_min(2.0 - 2.0 * (xn @ xn.t()), 0.0)
        dist = torch.sqrt(torch.clamp_min(dist_sq, DIST_EPS_SQ))
        pos, neg = ops.pair_masks(labels)
        upper = ops.upper_pairs(labels)
        hinge = torch.relu(self.margin - dist)
        terms = torch.where(pos, dist_sq, hinge * hinge)
        terms = torch.where(upper, terms, terms * 0.0)
        count = labels.shape[0] * (labels.shape[0] - 1) // 2
        return terms.sum() / max(count, 1)
