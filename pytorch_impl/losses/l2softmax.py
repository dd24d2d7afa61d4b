"""L2-constrained softmax (Ranjan, Castillo, Chellappa 2017, arXiv:1703.09507)."""

from __future__ import annotations

from .base import SCALE, MarginSoftmax, register_loss


@register_loss("l2softmax")
class L2Softmax(MarginSoftmax):
    """logits_j = W_j . (s x^): the embedding is scaled to norm s, the weights are free."""

    normalize_weight = False
    ranges = {"scale": SCALE}  # no "auto": with W free the logits are not cosines

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 30.0):
        super().__init__(num_classes, embedding_size, scale=scale)
