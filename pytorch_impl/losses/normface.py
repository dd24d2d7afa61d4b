"""NormFace (Wang, Xiang, Cheng, Yuille 2017, arXiv:1704.06369)."""

from __future__ import annotations

from .base import MarginSoftmax, register_loss


@register_loss("normface")
class NormFace(MarginSoftmax):
    """logits_j = s cos_j, cos_j = <x^, W^_j>; no margin."""

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 30.0):
        super().__init__(num_classes, embedding_size, scale=scale)
