"""Center loss (Wen, Zhang, Li, Qiao, ECCV 2016): softmax CE + lambda/2 mean_i |x_i - c_{y_i}|^2."""

from __future__ import annotations

import torch

from .base import AuxTerm, JointLoss, Real, register_aux, register_loss
from .softmax import Softmax


@register_aux("center")
class CenterTerm(AuxTerm):
    """1/2 mean_i |x_i - c_{y_i}|^2; the centres are a buffer, not learned by the optimiser.

    ``step`` applies the alpha rule with the batch's detached x:
    c_j <- c_j - alpha sum_{i: y_i = j} (c_j - x_i) / (1 + n_j), only for classes in the batch.
    """

    state_names = ("centers",)
    ranges = {"alpha": Real(0.0, 1.0)}

    def __init__(self, num_classes: int, embedding_size: int, alpha: float = 0.5):
        super().__init__(num_classes, embedding_size, alpha=alpha)
        self.register_buffer("centers", torch.zeros(num_classes, embedding_size))

    def forward(self, x, labels):
        diff = x - self.centers.to(x.dtype)[labels]
        return 0.5 * (diff * diff).sum(dim=1).mean()

    @torch.no_grad()
    def step(self, x, labels) -> None:
        uniq, inverse = torch.unique(labels, return_inverse=True)
        # U x B membership (U <= B classes in the batch), never C x anything
        member = (inverse[None, :] == torch.arange(uniq.shape[0])[:, None]).to(self.centers.dtype)
        diff = self.centers[labels] - x.to(self.centers.dtype)
        delta = (member @ diff) / (1.0 + member.sum(dim=1))[:, None]
        self.centers[uniq] = self.centers[uniq] - self.alpha * delta


@register_loss("center")
class Center(JointLoss):
    """Softmax + lambda_ x Center; the defaults (lambda_, alpha) are JointLoss's and
    CenterTerm's signatures'."""

    base_cls = Softmax
    aux_cls = CenterTerm
