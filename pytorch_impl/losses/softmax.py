"""Plain softmax cross-entropy: logits W_j . x (no bias, nothing normalised)."""

from __future__ import annotations

from .base import MarginSoftmax, register_loss


@register_loss("softmax")
class Softmax(MarginSoftmax):
    """L = mean_i -log softmax(W x_i)_{y_i}; the baseline every margin loss modifies."""

    normalize_weight = False
    normalize_embedding = False
    joinable = False  # its joints are "center" and "ring" themselves

    def __init__(self, num_classes: int, embedding_size: int):
        super().__init__(num_classes, embedding_size)
