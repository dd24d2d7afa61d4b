"""Center loss (Gluon twin of pytorch_impl/losses/center.py)."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import nd

from .base import AuxTerm, JointLoss, Real, register_aux, register_loss
from .softmax import Softmax


@register_aux("center")
class CenterTerm(AuxTerm):
    """See ``pytorch_impl.losses.center.CenterTerm``; centres: Parameter, grad_req='null'."""

    state_names = ("centers",)
    ranges = {"alpha": Real(0.0, 1.0)}

    def __init__(self, num_classes: int, embedding_size: int, alpha: float = 0.5):
        super().__init__(num_classes, embedding_size, alpha=alpha)
        self.centers = self.params.get("centers", shape=(num_classes, embedding_size),
                                       grad_req="null", init=mx.init.Zero())

    def hybrid_forward(self, F, x, labels, centers):
        diff = x - F.take(centers, labels)
        return 0.5 * F.mean(F.sum(diff * diff, axis=1))

    def step(self, x, labels) -> None:
        lab = labels.asnumpy().astype(np.int64)
        uniq, inverse = np.unique(lab, return_inverse=True)
        centers = self.centers.data()
        # U x B membership (U <= B classes in the batch), never C x anything
        member = nd.array(inverse[None, :] == np.arange(uniq.shape[0])[:, None],
                          dtype=centers.dtype)
        diff = nd.take(centers, nd.array(lab)) - x.astype(centers.dtype)
        delta = nd.broadcast_div(nd.dot(member, diff),
                                 nd.expand_dims(1.0 + nd.sum(member, axis=1), axis=1))
        rows = nd.array(uniq, dtype="int64")
        centers[rows] = nd.take(centers, rows) - self.alpha * delta


@register_loss("center")
class Center(JointLoss):
    """See ``pytorch_impl.losses.center.Center``."""

    base_cls = Softmax
    aux_cls = CenterTerm
