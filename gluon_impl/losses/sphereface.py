"""SphereFace / A-Softmax (Gluon twin of pytorch_impl/losses/sphereface.py)."""

from __future__ import annotations

import math

import mxnet as mx

from .base import Int, MarginSoftmax, register_loss

LAMBDA_MIN, LAMBDA_MAX, LAMBDA_GAMMA = 5.0, 1000.0, 0.12


def chebyshev(cos, m: int):
    """cos(m theta) = T_m(cos theta) by T_{n+1} = 2 c T_n - T_{n-1}."""
    prev, cur = cos * 0.0 + 1.0, cos
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cos * cur - prev
    return cur if m >= 1 else prev


@register_loss("sphereface")
class SphereFace(MarginSoftmax):
    """See ``pytorch_impl.losses.sphereface.SphereFace``; ``iteration`` is a Parameter with
    grad_req='null', advanced by ``step()`` outside the graph so it counts when hybridized."""

    scale_by_norm = True
    normalize_embedding = False
    state_names = ("weight", "iteration")
    ranges = {"margin": Int(1, 10)}

    def __init__(self, num_classes: int, embedding_size: int, margin: int = 4):
        super().__init__(num_classes, embedding_size, margin=margin)
        self.iteration = self.params.get("iteration", shape=(1,), grad_req="null",
                                         init=mx.init.Zero())

    def current_lambda(self, F, iteration):
        return F.maximum(LAMBDA_MAX / (1.0 + LAMBDA_GAMMA * iteration), LAMBDA_MIN)

    def psi(self, F, cos):
        k = F.floor(self.margin * F.arccos(F.stop_gradient(cos)) / math.pi)
        sign = 1.0 - 2.0 * (k - 2.0 * F.floor(k / 2.0))
        return sign * chebyshev(cos, self.margin) - 2.0 * k

    def target_logit(self, F, cos, iteration=None, **params):
        lam = self.current_lambda(F, iteration)
        num = F.broadcast_add(F.broadcast_mul(lam, cos), self.psi(F, cos))
        return F.broadcast_div(num, 1.0 + lam)

    def step(self, x, labels) -> None:
        self.iteration.set_data(self.iteration.data() + 1)
