"""CosFace / large margin cosine loss (Wang et al. 2018, arXiv:1801.09414)."""

from __future__ import annotations

from .base import MarginSoftmax, Real, register_loss


@register_loss("cosface")
class CosFace(MarginSoftmax):
    """Target logit s (cos_y - m), others s cos_j. ``margin`` m is in cosine units, [0, 2)."""

    ranges = {"margin": Real(0.0, 2.0, hi_open=True)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.35):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin)

    def target_logit(self, cos):
        return cos - self.margin
