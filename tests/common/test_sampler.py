"""EpochSampler: determinism from (seed, epoch), coverage, flips, P x K batches."""

from __future__ import annotations

import numpy as np
import pytest

from common.sampler import EpochSampler, StepBudget

LABELS = np.repeat(np.arange(7), [5, 3, 8, 2, 6, 4, 1])  # 29 samples, uneven identities


def collect(sampler, epoch):
    return [(i.copy(), f.copy()) for i, f in sampler.batches(epoch)]


def test_same_seed_and_epoch_give_same_batches():
    a = collect(EpochSampler(LABELS, 4, seed=3), 2)
    b = collect(EpochSampler(LABELS, 4, seed=3), 2)  # a fresh object: resume gives the same
    for (ia, fa), (ib, fb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(fa, fb)
    c = collect(EpochSampler(LABELS, 4, seed=3), 3)
    d = collect(EpochSampler(LABELS, 4, seed=4), 2)
    assert not np.array_equal(a[0][0], c[0][0]) and not np.array_equal(a[0][0], d[0][0])


def test_plain_mode_covers_each_sample_once():
    s = EpochSampler(LABELS, 4, seed=0)
    batches = collect(s, 0)
    assert len(batches) == len(s) == 7
    flat = np.concatenate([i for i, _ in batches])
    assert flat.dtype == np.int64 and len(set(flat.tolist())) == 28
    flips = np.concatenate([f for _, f in batches])
    assert flips.dtype == np.bool_ and 0 < flips.sum() < len(flips)
    s2 = EpochSampler(LABELS, 4, seed=0, drop_last=False, flip=False)
    batches = collect(s2, 0)
    assert len(s2) == 8 and len(batches[-1][0]) == 1
    assert sorted(np.concatenate([i for i, _ in batches]).tolist()) == list(range(29))
    assert not any(f.any() for _, f in batches)


def test_pk_batches_hold_p_identities_of_k_images():
    s = EpochSampler(LABELS, 6, seed=1, pk=2)
    batches = collect(s, 0)
    assert len(batches) == len(s) > 0
    for idx, flips in batches:
        assert len(idx) == 6 and len(flips) == 6
        labels = LABELS[idx].reshape(3, 2)
        assert (labels[:, 0] == labels[:, 1]).all()  # K images of one identity
        assert len(set(labels[:, 0].tolist())) == 3  # P distinct identities
    used = set(np.concatenate([i for i, _ in batches]).tolist())
    assert len(used) >= 24  # nearly every sample appears once per epoch


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        EpochSampler(LABELS, 0, seed=0)
    with pytest.raises(ValueError, match="pk must be >= 2 and divide batch_size"):
        EpochSampler(LABELS, 6, seed=0, pk=4)
    with pytest.raises(ValueError, match="labels must be a non-empty"):
        EpochSampler([], 2, seed=0)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        next(EpochSampler(LABELS, 2, seed=0).batches(-1))


def test_step_budget_is_the_epoch_stream_cut_at_steps():
    inner = EpochSampler(LABELS, 4, seed=5)  # 7 batches per epoch
    stream = collect(inner, 0) + collect(inner, 1) + collect(inner, 2)
    for steps in (3, 7, 16):
        budget = collect(StepBudget(inner, steps), 0)
        assert len(budget) == len(StepBudget(inner, steps)) == steps
        for (ia, fa), (ib, fb) in zip(budget, stream[:steps]):
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_array_equal(fa, fb)
    # a fresh budget (a resumed run) sees the same batches
    again = collect(StepBudget(EpochSampler(LABELS, 4, seed=5), 16), 0)
    np.testing.assert_array_equal(np.concatenate([i for i, _ in again]),
                                  np.concatenate([i for i, _ in stream[:16]]))


def test_step_budget_bad_arguments():
    inner = EpochSampler(LABELS, 4, seed=0)
    for steps in (0, -1, 2.5):
        with pytest.raises(ValueError, match="steps must be an integer >= 1"):
            StepBudget(inner, steps)
    with pytest.raises(ValueError, match="single epoch"):
        next(StepBudget(inner, 3).batches(1))
