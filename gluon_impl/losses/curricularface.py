"""CurricularFace (Gluon twin of pytorch_impl/losses/curricularface.py)."""

from __future__ import annotations

import math

import mxnet as mx

from .. import ops
from .arcface import SIN_EPS, arc_margin
from .base import Real, SoftmaxHead, register_loss


@register_loss("curricularface")
class CurricularFace(SoftmaxHead):
    """See ``pytorch_impl.losses.curricularface.CurricularFace``; ``t`` is a Parameter with
    grad_req='null', advanced by ``step()`` outside the graph so it counts when hybridized.
    The hard-negative rule is the ``hard`` argument of ``ops.margin_cross_entropy`` (the
    fused ``curricular_lse_rows`` operator, or the same rule as graph operators)."""

    fused_head = True
    state_from_target_cosines = True
    state_names = ("weight", "t")
    ranges = {"margin": Real(0.0, math.pi, hi_open=True), "t_alpha": Real(0.0, 1.0)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.5, t_alpha: float = 0.01):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin,
                         t_alpha=t_alpha)
        self.t = self.params.get("t", shape=(1,), grad_req="null", init=mx.init.Zero())

    def hybrid_forward(self, F, x, labels, weight, t):
        s = self.scale
        hard = (t, s, math.cos(self.margin), math.sin(self.margin), SIN_EPS)
        return ops.margin_cross_entropy(F, ops.l2_normalize(F, x, s), weight, labels, s, True,
                                        lambda cos_y: self.target_logit(F, cos_y),
                                        self.num_classes, hard=hard)

    def target_logit(self, F, cos_y):
        return arc_margin(F, ops.clamp_st(F, cos_y, -1.0, 1.0), self.margin, easy_margin=False)

    def step(self, x, labels) -> None:
        self.advance(self.target_cosines(x, self.weight.data(), labels))

    def target_cosines(self, x, weight, labels):
        """cos(x_i, W_{y_i}) in t's dtype, ``labels`` indexing the rows of ``weight``."""
        from mxnet import nd

        dtype = self.t.dtype
        x, w = x.astype(dtype, copy=False), weight.astype(dtype, copy=False)
        return nd.sum(ops.l2_normalize(nd, x) * nd.take(ops.l2_normalize(nd, w), labels), axis=1)

    def advance(self, cos_y) -> None:
        """t <- a mean(clamp(cos_y)) + (1 - a) t, from the batch's target cosines."""
        from mxnet import nd

        t = self.t.data()
        mean = nd.mean(ops.clip(nd, cos_y.astype(t.dtype, copy=False), -1.0, 1.0))
        self.t.set_data(self.t_alpha * mean.reshape((1,)) + (1.0 - self.t_alpha) * t)
