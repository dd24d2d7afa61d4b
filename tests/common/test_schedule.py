"""common.schedule: warm-up, step, poly and cosine values from their formulas; argument errors."""

from __future__ import annotations

import math

import pytest

from common.schedule import LRSchedule, build_schedule


def test_warmup_is_linear_and_reaches_base_lr():
    s = LRSchedule(base_lr=0.1, total_steps=100, warmup_steps=10, mode="cosine")
    assert [s(t) for t in range(3)] == pytest.approx([0.01, 0.02, 0.03])
    assert s(9) == pytest.approx(0.1)
    assert s(10) == pytest.approx(0.1)  # cosine starts at base_lr right after warm-up


def test_step_mode_applies_gamma_at_each_milestone():
    s = LRSchedule(base_lr=0.1, total_steps=100, warmup_steps=0, mode="step",
                   milestones=(30, 60), gamma=0.1)
    assert s(29) == pytest.approx(0.1)
    assert s(30) == pytest.approx(0.01)
    assert s(59) == pytest.approx(0.01)
    assert s(60) == pytest.approx(0.001)
    assert s(99) == pytest.approx(0.001)


def test_poly_and_cosine_follow_their_formulas():
    poly = LRSchedule(base_lr=0.2, total_steps=110, warmup_steps=10, mode="poly", power=2.0)
    cos = LRSchedule(base_lr=0.2, total_steps=110, warmup_steps=10, mode="cosine", min_lr=0.02)
    for t in (10, 35, 60, 109):
        p = (t - 10) / 100
        assert poly(t) == pytest.approx(0.2 * (1 - p) ** 2)
        assert cos(t) == pytest.approx(0.02 + 0.18 * 0.5 * (1 + math.cos(math.pi * p)))
    assert poly(10_000) == 0.0  # past the end: clamped, never negative


def test_build_schedule_converts_epochs_to_steps():
    s = build_schedule("step", 0.1, epochs=4, steps_per_epoch=25, warmup_epochs=0.4,
                       milestone_epochs=(2, 3))
    assert (s.total_steps, s.warmup_steps, s.milestones) == (100, 10, (50, 75))
    assert s(49) == pytest.approx(0.1) and s(50) == pytest.approx(0.01)


def test_schedule_is_monotone_after_warmup():
    for mode in ("poly", "cosine"):
        s = build_schedule(mode, 0.1, epochs=3, steps_per_epoch=7, warmup_epochs=1)
        values = [s(t) for t in range(7, 21)]
        assert all(a >= b for a, b in zip(values, values[1:])), mode


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(base_lr=0.0), "base_lr must be a finite number > 0, got 0.0"),
    (dict(base_lr=float("nan")), "base_lr"),
    (dict(total_steps=0), "total_steps must be an integer >= 1, got 0"),
    (dict(warmup_steps=11), "warmup_steps must be in [0, total_steps=10], got 11"),
    (dict(mode="linear"), "mode must be one of step, poly, cosine, got 'linear'"),
    (dict(mode="step", milestones=(5, 2)), "milestones must be non-negative and increasing"),
    (dict(gamma=0.0), "gamma must be in (0, 1], got 0.0"),
    (dict(power=-1.0), "power must be > 0, got -1.0"),
    (dict(min_lr=1.0), "min_lr must be in [0, base_lr=0.1], got 1.0"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, fragment):
    args = dict(base_lr=0.1, total_steps=10)
    args.update(kwargs)
    with pytest.raises(ValueError) as err:
        LRSchedule(**args)
    assert fragment in str(err.value)


def test_negative_step_is_rejected():
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        LRSchedule(base_lr=0.1, total_steps=10)(-1)
