"""CurricularFace (Gluon twin of pytorch_impl/losses/curricularface.py)."""

from __future__ import annotations

import math

import mxnet as mx

from .. import ops
from .arcface import SIN_EPS, arc_margin
from .base import Loss, check_real, register_loss


@register_loss("curricularface")
class CurricularFace(Loss):
    """See ``pytorch_impl.losses.curricularface.CurricularFace``; ``t`` is a Parameter with
    grad_req='null', advanced by ``step()`` outside the graph so it counts when hybridized."""

    softmax_family = True
    normalize_weight = True
    state_names = ("weight", "t")

    def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0,
                 margin: float = 0.5, t_alpha: float = 0.01):
        super().__init__(num_classes, embedding_size)
        owner = type(self).__name__
        self.scale = check_real(owner, "scale", scale, 0.0, 1e6, lo_open=True)
        self.margin = check_real(owner, "margin", margin, 0.0, math.pi, hi_open=True)
        self.t_alpha = check_real(owner, "t_alpha", t_alpha, 0.0, 1.0)
        self.weight = self.params.get("weight", shape=(num_classes, embedding_size),
                                      init=mx.init.Normal(0.01))
        self.t = self.params.get("t", shape=(1,), grad_req="null", init=mx.init.Zero())

    def hybrid_forward(self, F, x, labels, weight, t):
        s = self.scale
        logits = F.FullyConnected(ops.l2_normalize(F, x) * s, ops.l2_normalize(F, weight),
                                  no_bias=True, num_hidden=self.num_classes)  # s cos_j
        cos_y = ops.clamp_st(F, ops.gather_target(F, logits, labels) / s, -1.0, 1.0)
        target = s * arc_margin(F, cos_y, self.margin, easy_margin=False)
        c = F.stop_gradient(cos_y)  # the hard-negative test has no gradient
        sin = F.sqrt(F.maximum(1.0 - c * c, SIN_EPS))
        threshold = s * (c * math.cos(self.margin) - sin * math.sin(self.margin))
        hard = F.broadcast_greater(logits, F.reshape(threshold, shape=(-1, 1)))
        curriculum = F.broadcast_add(logits / s, F.reshape(F.stop_gradient(t), shape=(1, 1)))
        logits = F.where(hard, logits * curriculum, logits)
        logits = ops.replace_target(F, logits, labels, target, self.num_classes)
        return F.mean(-F.pick(F.log_softmax(logits, axis=1), labels, axis=1))

    def step(self, x, labels) -> None:
        from mxnet import nd

        t = self.t.data()
        x, w = x.astype(t.dtype, copy=False), self.weight.data().astype(t.dtype, copy=False)
        cos_y = nd.sum(ops.l2_normalize(nd, x) * nd.take(ops.l2_normalize(nd, w), labels),
                       axis=1)
        mean = nd.mean(ops.clip(nd, cos_y, -1.0, 1.0))
        self.t.set_data(self.t_alpha * mean.reshape((1,)) + (1.0 - self.t_alpha) * t)
