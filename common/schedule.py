"""Learning-rate schedule shared by both backends: linear warm-up, then step, poly or cosine.

Both training loops call the same ``LRSchedule`` with the global step index (0-based, counted
over all epochs) before every optimiser step, so the two backends see bit-identical rates.

- warm-up (Goyal et al. 2017, "Accurate, Large Minibatch SGD"):
  lr(t) = base_lr * (t + 1) / warmup_steps for t < warmup_steps. The ``+ 1`` makes the very
  first step move the weights (InsightFace's ``t / warmup`` spends step 0 at lr 0).
- ``step`` (SphereFace/ArcFace papers): lr = base_lr * gamma ** (number of milestones <= t).
  Milestones are global step indices.
- ``poly`` (InsightFace ``arcface_torch`` PolyScheduler):
  lr = base_lr * (1 - p) ** power, p = (t - warmup) / (total - warmup).
- ``cosine`` (Loshchilov & Hutter 2017, SGDR without restarts):
  lr = min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("step", "poly", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    """``schedule(step) -> lr``; arguments are checked here, once, with a ValueError."""

    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    mode: str = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    power: float = 2.0
    min_lr: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.base_lr) and self.base_lr > 0):
            raise ValueError(f"base_lr must be a finite number > 0, got {self.base_lr!r}")
        if int(self.total_steps) != self.total_steps or self.total_steps < 1:
            raise ValueError(f"total_steps must be an integer >= 1, got {self.total_steps!r}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={self.total_steps}], "
                f"got {self.warmup_steps!r}"
            )
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if list(self.milestones) != sorted(self.milestones) or any(
            m < 0 for m in self.milestones
        ):
            raise ValueError(
                f"milestones must be non-negative and increasing, got {self.milestones!r}"
            )
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if not self.power > 0:
            raise ValueError(f"power must be > 0, got {self.power!r}")
        if not 0 <= self.min_lr <= self.base_lr:
            raise ValueError(f"min_lr must be in [0, base_lr={self.base_lr}], got {self.min_lr!r}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step!r}")
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        if self.mode == "step":
            passed = sum(1 for m in self.milestones if m <= step)
            return self.base_lr * self.gamma**passed
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.mode == "poly":
            return self.base_lr * (1.0 - progress) ** self.power
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr + (self.base_lr - self.min_lr) * cosine


def build_schedule(
    mode: str,
    base_lr: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    milestone_epochs: tuple[float, ...] = (),
    **kw,
) -> LRSchedule:
    """Epoch-denominated front end: warm-up and milestones in epochs, converted to steps."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs!r}")
    total = epochs * steps_per_epoch
    return LRSchedule(
        base_lr=base_lr,
        total_steps=total,
        warmup_steps=min(int(round(warmup_epochs * steps_per_epoch)), total),
        mode=mode,
        milestones=tuple(int(round(e * steps_per_epoch)) for e in milestone_epochs),
        **kw,
    )
