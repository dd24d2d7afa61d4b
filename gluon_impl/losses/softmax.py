"""Plain softmax cross-entropy (Gluon twin of pytorch_impl/losses/softmax.py)."""

from __future__ import annotations

from .base import MarginSoftmax, register_loss


@register_loss("softmax")
class Softmax(MarginSoftmax):
    """See ``pytorch_impl.losses.softmax.Softmax``."""

    normalize_weight = False
    normalize_embedding = False
    joinable = False  # its joints are "center" and "ring" themselves

    def __init__(self, num_classes: int, embedding_size: int):
        super().__init__(num_classes, embedding_size)
