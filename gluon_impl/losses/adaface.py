"""AdaFace (Gluon twin of pytorch_impl/losses/adaface.py)."""

from __future__ import annotations

import math

import mxnet as mx

from .. import ops
from .base import MarginSoftmax, Real, register_loss

NORM_CLIP = (0.001, 100.0)
EPS = 1e-3


def norm_statistics(F, safe_norm):
    """Batch mean and (unbiased; 0 for a batch of one) standard deviation of the norms."""
    mean = F.mean(safe_norm, axis=0, keepdims=True)
    count = F.maximum(F.sum(F.ones_like(safe_norm), axis=0, keepdims=True) - 1.0, 1.0)
    dev = F.broadcast_sub(safe_norm, mean)
    return mean, F.sqrt(F.sum(dev * dev, axis=0, keepdims=True) / count)


@register_loss("adaface")
class AdaFace(MarginSoftmax):
    """See ``pytorch_impl.losses.adaface.AdaFace``; the statistics are Parameters with
    grad_req='null', stored by ``step()`` outside the graph."""

    uses_norm = True
    state_names = ("weight", "batch_mean", "batch_std")
    ranges = {"margin": Real(0.0, math.pi / 2), "h": Real(0.0, 1e3), "t_alpha": Real(0.0, 1.0)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.4, h: float = 0.333, t_alpha: float = 0.01):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin, h=h,
                         t_alpha=t_alpha)
        self.batch_mean = self.params.get("batch_mean", shape=(1,), grad_req="null",
                                          init=mx.init.Constant(20.0))
        self.batch_std = self.params.get("batch_std", shape=(1,), grad_req="null",
                                         init=mx.init.Constant(100.0))

    def updated_statistics(self, F, norm, batch_mean, batch_std):
        mean, std = norm_statistics(F, ops.clip(F, F.stop_gradient(norm), *NORM_CLIP))
        a = self.t_alpha
        return a * mean + (1.0 - a) * batch_mean, a * std + (1.0 - a) * batch_std

    def target_logit(self, F, cos, norm, batch_mean=None, batch_std=None, **params):
        mean, std = self.updated_statistics(F, norm, batch_mean, batch_std)
        safe = ops.clip(F, F.stop_gradient(norm), *NORM_CLIP)
        z = F.broadcast_div(F.broadcast_sub(safe, mean), std + EPS) * self.h
        z = ops.clip(F, z, -1.0, 1.0)
        theta = F.arccos(ops.clip(F, cos, -1.0 + EPS, 1.0 - EPS))
        theta_m = ops.clip(F, theta + self.margin * (1.0 - z), EPS, math.pi - EPS)
        return F.cos(theta_m) - self.margin * (1.0 + z)

    def step(self, x, labels) -> None:
        from mxnet import nd

        mean, std = self.updated_statistics(nd, ops.row_norm(nd, x), self.batch_mean.data(),
                                            self.batch_std.data())
        self.batch_mean.set_data(mean.reshape((1,)))
        self.batch_std.set_data(std.reshape((1,)))
