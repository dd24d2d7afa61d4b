"""NormFace (Gluon twin of pytorch_impl/losses/normface.py)."""

from __future__ import annotations

from .base import MarginSoftmax, register_loss


@register_loss("normface")
class NormFace(MarginSoftmax):
    """See ``pytorch_impl.losses.normface.NormFace``."""

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 30.0):
        super().__init__(num_classes, embedding_size, scale=scale)
