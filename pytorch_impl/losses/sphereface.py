"""SphereFace / A-Softmax (Liu et al. 2017, arXiv:1704.08063), with lambda annealing."""

from __future__ import annotations

import math

import torch

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
    """A-Softmax: W normalised, x not; logits_j = |x| cos_j, the target becomes
    |x| (lambda cos_y + psi(theta_y)) / (1 + lambda).

    psi(theta) = (-1)^k cos(m theta) - 2k on [k pi/m, (k+1) pi/m], k = floor(m theta / pi)
    taken without gradient, cos(m theta) by the Chebyshev polynomial; ``margin`` m is an
    integer in [1, 10]. lambda = max(5, 1000 (1 + 0.12 t)^-1) with t the ``iteration`` buffer,
    advanced by ``step()`` only (explicit state, saved in checkpoints).
    """

    scale_by_norm = True
    normalize_embedding = False
    state_names = ("weight", "iteration")
    ranges = {"margin": Int(1, 10)}

    def __init__(self, num_classes: int, embedding_size: int, margin: int = 4):
        super().__init__(num_classes, embedding_size, margin=margin)
        self.register_buffer("iteration", torch.zeros(1, dtype=torch.int64))

    def current_lambda(self, dtype=torch.float64):
        t = self.iteration.to(dtype)
        return torch.clamp_min(LAMBDA_MAX / (1.0 + LAMBDA_GAMMA * t), LAMBDA_MIN)

    def psi(self, cos):
        k = torch.floor(self.margin * torch.arccos(cos.detach()) / math.pi)
        sign = 1.0 - 2.0 * (k - 2.0 * torch.floor(k / 2.0))
        return sign * chebyshev(cos, self.margin) - 2.0 * k

    def target_logit(self, cos):
        lam = self.current_lambda(cos.dtype)
        return (lam * cos + self.psi(cos)) / (1.0 + lam)

    @torch.no_grad()
    def step(self, x, labels) -> None:
        self.iteration += 1
