"""CosFace (Gluon twin of pytorch_impl/losses/cosface.py)."""

from __future__ import annotations

from .base import MarginSoftmax, check_real, register_loss


@register_loss("cosface")
class CosFace(MarginSoftmax):
    """See ``pytorch_impl.losses.cosface.CosFace``."""

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0,
                 margin: float = 0.35):
        super().__init__(num_classes, embedding_size, scale=scale)
        self.margin = check_real(type(self).__name__, "margin", margin, 0.0, 2.0, hi_open=True)

    def target_logit(self, F, cos, **params):
        return cos - self.margin
