"""CurricularFace (Huang, Wang, Tai, Liu, Shen, Li, Li, Huang, CVPR 2020, arXiv:2004.00288)."""

from __future__ import annotations

import math

import torch

from .. import ops
from .arcface import SIN_EPS, arc_margin
from .base import Real, SoftmaxHead, register_loss


@register_loss("curricularface")
class CurricularFace(SoftmaxHead):
    """ArcFace target plus an adaptive curriculum on the hard negatives:

    target s cos(theta_y + m) with ArcFace's fallback (``arcface.arc_margin``); a negative j
    is hard when cos_j > cos(theta_y + m) (the plain formula, sin = sqrt(max(1 - cos^2,
    1e-7)), as in the paper's code) and its logit becomes s cos_j (t + cos_j), the others stay
    s cos_j; mean CE. ``margin`` m in radians, [0, pi). t (state ``t``, initially 0, no
    gradient) is the running mean of the target cosines: t <- a mean_i cos_y_i + (1 - a) t,
    a = ``t_alpha`` (0.01 as in the paper's code), advanced by ``step()`` after the optimiser
    step from the batch's detached embeddings and the current weights. The forward uses t as
    stored, i.e. up to the previous batch (the paper's code folds the current batch in
    first: a one-batch lag at a 1% weight, so the forward is a function of x and W alone).
    Non-target cosines are not clipped. Not a ``MarginSoftmax`` (whose hook changes the
    target column only): the fused head takes the hard-negative rule as its ``hard`` argument;
    Partial FC shards it through ``scaled_class_logits``, ``target_logit``,
    ``negative_rule``, ``target_cosines`` and ``advance`` (t from the target cosines of the
    whole batch, each computed on the rank that holds its class).
    """

    fused_head = True
    state_from_target_cosines = True
    state_names = ("weight", "t")
    ranges = {"margin": Real(0.0, math.pi, hi_open=True), "t_alpha": Real(0.0, 1.0)}

    def __init__(self, num_classes: int, embedding_size: int, scale: float | str = 64.0,
                 margin: float = 0.5, t_alpha: float = 0.01):
        super().__init__(num_classes, embedding_size, scale=scale, margin=margin,
                         t_alpha=t_alpha)
        self.register_buffer("t", torch.zeros(1))

    def compute(self, x, labels):
        s = self.scale
        hard = (self.t.detach(), s, math.cos(self.margin), math.sin(self.margin), SIN_EPS)
        return ops.margin_cross_entropy(x, self.weight.to(x.dtype), labels,
                                        torch.full_like(x[:, 0], s), True, self.target_logit,
                                        hard=hard, embed_scale=s)

    def target_logit(self, cos_y):
        return arc_margin(ops.clamp_st(cos_y, -1.0, 1.0), self.margin, easy_margin=False)

    @torch.no_grad()
    def step(self, x, labels) -> None:
        self.advance(self.target_cosines(x, self.weight, labels))

    def target_cosines(self, x, weight, labels):
        """cos(x_i, W_{y_i}) in t's dtype, ``labels`` indexing the rows of ``weight``."""
        x, w = x.to(self.t.dtype), weight.to(self.t.dtype)
        return (ops.l2_normalize(x) * ops.l2_normalize(w)[labels.long()]).sum(dim=1)

    @torch.no_grad()
    def advance(self, cos_y) -> None:
        """t <- a mean(clamp(cos_y)) + (1 - a) t, from the batch's target cosines."""
        mean = torch.clamp(cos_y.to(self.t.dtype), -1.0, 1.0).mean()
        self.t.copy_(self.t_alpha * mean + (1.0 - self.t_alpha) * self.t)

    # Partial FC runs on a shard of the classes (pytorch_impl/partial_fc.py), as autograd
    # operations, the base's scaled_class_logits and this rule: the maths of the fused head above
    def negative_rule(self, logits, cos_y):
        """The hard-negative rule on s cos logits, given every row's target cosine."""
        s, m = self.scale, self.margin
        threshold = ops.curricular_threshold(cos_y, s, math.cos(m), math.sin(m), SIN_EPS)
        return torch.where(logits > threshold[:, None],
                           logits * (self.t.detach().to(logits.dtype) + logits / s), logits)
