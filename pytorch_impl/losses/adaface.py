"""AdaFace (Kim, Jain, Liu, CVPR 2022, arXiv:2204.00964)."""

from __future__ import annotations

import math

import torch

from .. import ops
from .base import MarginSoftmax, Real, register_loss

NORM_CLIP = (0.001, 100.0)
EPS = 1e-3


def norm_statistics(safe_norm):
    """Batch mean and (unbiased; 0 for a batch of one) standard deviation of the norms."""
    mean = safe_norm.mean()
    count = max(safe_norm.shape[0] - 1, 1)
    return mean, torch.sqrt(((safe_norm - mean) ** 2).sum() / count)


@register_loss("adaface")
class AdaFace(MarginSoftmax):
    """Quality-adaptive margin from the (detached) feature norm ||x||, clipped to [1e-3, 100]:

    z = clip(h (||x|| - mu) / (sigma + 1e-3), -1, 1) with mu, sigma EMAs of the batch norm
    statistics (momentum ``t_alpha``, initial 20 and 100); target
    s [cos(clip(theta_y + m (1 - z), 1e-3, pi - 1e-3)) - m (1 + z)], theta_y = acos of cos_y
    clipped to [-1 + 1e-3, 1 - 1e-3]; others s cos_j. As in the paper's code the forward uses
    the statistics updated with the current batch; ``step()`` stores that update (state
    ``batch_mean``, ``batch_std``). Unlike that code, non-target cosines are not clipped.
    """

    uses_norm = True
    state_names = ("weight", "batch_mean", "batch_std")
    ranges = {"margin": Real(0.0, math.pi / 2), "h": Real(0.0, 1e3), "t_alpha": Real(0.0, 1.0)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.4, h: float = 0.333, t_alpha: float = 0.01):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin, h=h,
                         t_alpha=t_alpha)
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))

    def updated_statistics(self, norm):
        mean, std = norm_statistics(ops.clip(norm.detach(), *NORM_CLIP))
        a = self.t_alpha
        return (a * mean + (1.0 - a) * self.batch_mean.to(norm.dtype),
                a * std + (1.0 - a) * self.batch_std.to(norm.dtype))

    def target_logit(self, cos, norm):
        mean, std = self.updated_statistics(norm)
        safe = ops.clip(norm.detach(), *NORM_CLIP)
        z = ops.clip((safe - mean) / (std + EPS) * self.h, -1.0, 1.0)
        theta = torch.arccos(ops.clip(cos, -1.0 + EPS, 1.0 - EPS))
        theta_m = ops.clip(theta + self.margin * (1.0 - z), EPS, math.pi - EPS)
        return torch.cos(theta_m) - self.margin * (1.0 + z)

    @torch.no_grad()
    def step(self, x, labels) -> None:
        mean, std = self.updated_statistics(ops.row_norm(x.to(self.batch_mean.dtype)))
        self.batch_mean.copy_(mean.reshape(1))
        self.batch_std.copy_(std.reshape(1))
