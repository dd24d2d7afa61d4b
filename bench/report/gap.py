"""Statistics of the two-backend comparison: the paired gap over seeds, McNemar's exact test on
per-pair decisions, and a ranking of losses that shows ties.

- Paired gap (Student 1908): for seeds s = 1..n, d_s = acc_torch(s) - acc_gluon(s) (both runs of
  a seed start from the same weights and see the same batches, so they are paired). The 95 %
  interval is mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n) with the sample sd (ddof = 1); it
  "excludes zero" when lo > 0 or hi < 0. With n < 2 there is no interval (NaN) and nothing is
  claimed. The two-sided p of the same paired t-test is given beside it.
- McNemar's exact test (McNemar 1947; the exact binomial form, e.g. Dietterich 1998, "Approximate
  statistical tests for comparing supervised classification learning algorithms"): on the same
  test pairs, b = pairs the first backend gets right and the second wrong, c = the reverse;
  p = min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)]), and p = 1 when b + c = 0.
- Per-pair decisions follow the verification protocol exactly (SPEC section 3): pair i of fold
  f is predicted "same" when dist_i < best_threshold_f, the threshold picked on the other nine
  folds, so the decisions' fold means are the reported fold accuracies.
- Ranking with ties: losses sorted by mean accuracy over seeds; a loss's rank is 1 + the number
  of losses whose whole interval lies above its own, so losses whose intervals overlap can share
  a rank; ``tied_with`` lists the losses whose intervals overlap its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from common.verification import fold_ids


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with a two-sided t confidence interval (NaN bounds when n < 2)."""

    n: int
    mean: float
    std: float  # sample standard deviation (ddof = 1); NaN when n < 2
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.lo > 0 or self.hi < 0)  # False when the bounds are NaN

    def overlaps(self, other: Interval) -> bool:
        """True when the intervals share a point, or when either is undetermined (NaN)."""
        if any(math.isnan(v) for v in (self.lo, self.hi, other.lo, other.hi)):
            return True
        return not (self.lo > other.hi or other.lo > self.hi)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def t_interval(values, confidence: float = 0.95) -> Interval:
    """Mean and two-sided Student-t interval of ``values`` (finite numbers, at least one)."""
    _check_confidence(confidence)
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("values: need at least one number, got none")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"values: must be finite, got {x.tolist()}")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * std / math.sqrt(x.size)
    return Interval(int(x.size), mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class PairedGap:
    """first - second over the seeds both have; ``interval`` is the t-interval of the diffs."""

    seeds: tuple
    diffs: tuple
    interval: Interval
    p_value: float  # two-sided paired t-test; NaN with < 2 seeds or all diffs equal


def paired_gap(first: dict, second: dict, confidence: float = 0.95) -> PairedGap:
    """Paired difference ``first[s] - second[s]`` over the seeds s present in both dicts."""
    seeds = tuple(sorted(set(first) & set(second)))
    if not seeds:
        raise ValueError(f"no seed in common: first has {sorted(first)}, second has "
                         f"{sorted(second)}")
    diffs = np.array([first[s] - second[s] for s in seeds], dtype=float)
    interval = t_interval(diffs, confidence)
    p = math.nan
    if diffs.size >= 2 and interval.std > 0:
        t = interval.mean / (interval.std / math.sqrt(diffs.size))
        p = float(2 * stats.t.sf(abs(t), diffs.size - 1))
    return PairedGap(seeds, tuple(float(d) for d in diffs), interval, p)


def versus_reference(acc: dict, reference: str,
                     confidence: float = 0.95) -> dict[str, PairedGap]:
    """``{loss: {seed: accuracy}}`` -> ``{loss: paired_gap(loss, reference)}`` for every other
    loss that shares a seed with ``reference`` (all losses of a seed train from the same
    backbone weights on the same batches, so the difference to the reference is paired)."""
    ref = acc.get(reference) or {}
    return {loss: paired_gap(seeds, ref, confidence) for loss, seeds in sorted(acc.items())
            if loss != reference and set(seeds) & set(ref)}


def pair_decisions(distances, best_thresholds, nrof_folds: int) -> np.ndarray:
    """Per-pair "same" predictions of the 10-fold protocol: dist < that fold's threshold."""
    dist = np.asarray(distances, dtype=float)
    thr = np.asarray(best_thresholds, dtype=float)
    if dist.ndim != 1 or dist.size == 0:
        raise ValueError(f"distances: expected a non-empty 1-D array, got shape {dist.shape}")
    if thr.shape != (nrof_folds,):
        raise ValueError(f"best_thresholds: expected shape ({nrof_folds},) for nrof_folds="
                         f"{nrof_folds}, got {thr.shape}")
    return dist < thr[fold_ids(dist.size, nrof_folds)]


def correct_pairs(result) -> np.ndarray:
    """Bool per pair: the protocol's decision is right (from a ``VerificationResult``)."""
    pred = pair_decisions(result.distances, result.best_thresholds, int(result.nrof_folds))
    return pred == np.asarray(result.issame, dtype=bool)


@dataclass(frozen=True)
class McNemar:
    only_first: int  # b: pairs the first gets right and the second wrong
    only_second: int  # c: the reverse
    both_right: int
    both_wrong: int
    p_value: float


def binomial_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n trials at p = 1/2 (integer arithmetic)."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar_exact(correct_first, correct_second) -> McNemar:
    """McNemar's exact test on two bool arrays over the same pairs."""
    a = np.asarray(correct_first)
    b = np.asarray(correct_second)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"correct_first and correct_second must be 1-D of equal length, got "
                         f"shapes {a.shape} and {b.shape}")
    if a.dtype != np.bool_ or b.dtype != np.bool_:
        raise ValueError(f"correct_first/correct_second must be bool arrays, got {a.dtype} and "
                         f"{b.dtype}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    return McNemar(only_a, only_b, int((a & b).sum()), int((~a & ~b).sum()),
                   binomial_two_sided_half(only_a, only_a + only_b))


@dataclass(frozen=True)
class Ranked:
    name: str
    rank: int
    interval: Interval
    tied_with: tuple


def rank_with_ties(intervals: dict) -> list[Ranked]:
    """``{name: Interval}`` -> ranking, best mean first; overlapping intervals can share a rank."""
    names = sorted(intervals, key=lambda k: (-intervals[k].mean, k))
    out = []
    for name in names:
        iv = intervals[name]
        above = sum(1 for o in names if o != name and not iv.overlaps(intervals[o])
                    and intervals[o].mean > iv.mean)
        tied = tuple(o for o in names if o != name and iv.overlaps(intervals[o]))
        out.append(Ranked(name, 1 + above, iv, tied))
    return out
