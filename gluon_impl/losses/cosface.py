"""CosFace (Gluon twin of pytorch_impl/losses/cosface.py)."""

from __future__ import annotations

from .base import MarginSoftmax, Real, register_loss


@register_loss("cosface")
class CosFace(MarginSoftmax):
    """See ``pytorch_impl.losses.cosface.CosFace``."""

    ranges = {"margin": Real(0.0, 2.0, hi_open=True)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.35):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin)

    def target_logit(self, F, cos, **params):
        return cos - self.margin
