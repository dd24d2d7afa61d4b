"""L2-constrained softmax (Gluon twin of pytorch_impl/losses/l2softmax.py)."""

from __future__ import annotations

from .base import SCALE, MarginSoftmax, register_loss


@register_loss("l2softmax")
class L2Softmax(MarginSoftmax):
    """See ``pytorch_impl.losses.l2softmax.L2Softmax``."""

    normalize_weight = False
    ranges = {"scale": SCALE}  # no "auto": with W free the logits are not cosines

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 30.0):
        super().__init__(num_classes, embedding_size, scale=scale)
