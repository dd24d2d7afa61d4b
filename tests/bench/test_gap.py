"""bench.report.gap: paired t-interval, McNemar's exact test, per-pair decisions, ranking, ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.report.gap import (
    Interval,
    binomial_two_sided_half,
    correct_pairs,
    mcnemar_exact,
    pair_decisions,
    paired_gap,
    rank_with_ties,
    t_interval,
)
from common.verification import evaluate_embeddings


def test_t_interval_matches_scipy():
    x = np.array([0.912, 0.905, 0.921, 0.899, 0.915])
    iv = t_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert iv.n == 5 and iv.mean == pytest.approx(x.mean(), abs=1e-15)
    assert iv.std == pytest.approx(x.std(ddof=1), rel=1e-12)
    assert (iv.lo, iv.hi) == pytest.approx((lo, hi), rel=1e-12)


def test_t_interval_by_hand_for_three_values():
    iv = t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1
    # Student t with 2 d.o.f. has the closed-form quantile (2p - 1) * sqrt(2 / (4 p (1 - p)))
    t = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    assert iv.lo == pytest.approx(2 - t / math.sqrt(3), abs=1e-9)  # scipy ppf: ~1e-11
    assert iv.hi == pytest.approx(2 + t / math.sqrt(3), abs=1e-9)


def test_one_value_gives_no_interval_and_claims_nothing():
    iv = t_interval([0.9])
    assert iv.n == 1 and math.isnan(iv.lo) and math.isnan(iv.hi) and not iv.excludes_zero


@pytest.mark.parametrize("bad, match", [([], "at least one"), ([1.0, math.nan], "finite")])
def test_t_interval_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        t_interval(bad)


def test_t_interval_rejects_bad_confidence():
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 1.5"):
        t_interval([1.0, 2.0], confidence=1.5)


def test_paired_gap_matches_scipy_ttest_rel_and_uses_common_seeds():
    torch_acc = {0: 0.931, 1: 0.925, 2: 0.940, 3: 0.90}
    gluon_acc = {0: 0.921, 1: 0.924, 2: 0.930, 7: 0.5}  # seed 3 / 7 have no partner
    gap = paired_gap(torch_acc, gluon_acc)
    a, b = [0.931, 0.925, 0.940], [0.921, 0.924, 0.930]
    assert gap.seeds == (0, 1, 2)
    assert gap.diffs == pytest.approx((0.01, 0.001, 0.01), abs=1e-12)
    assert gap.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10)
    d = np.subtract(a, b)
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert (gap.interval.lo, gap.interval.hi) == pytest.approx((lo, hi), rel=1e-10)
    assert gap.interval.excludes_zero == (lo > 0 or hi < 0)


def test_paired_gap_excludes_zero_only_for_a_consistent_gap():
    consistent = paired_gap({0: 0.95, 1: 0.96, 2: 0.97}, {0: 0.94, 1: 0.951, 2: 0.959})
    noisy = paired_gap({0: 0.95, 1: 0.90, 2: 0.97}, {0: 0.94, 1: 0.93, 2: 0.96})
    assert consistent.interval.excludes_zero and consistent.interval.lo > 0
    assert not noisy.interval.excludes_zero


def test_paired_gap_without_common_seed_raises():
    with pytest.raises(ValueError, match="no seed in common"):
        paired_gap({0: 0.9}, {1: 0.9})


def test_binomial_two_sided_half_by_hand_and_scipy():
    assert binomial_two_sided_half(1, 10) == pytest.approx(22 / 1024, abs=1e-15)  # 2*(1+10)/2^10
    assert binomial_two_sided_half(0, 0) == 1.0
    assert binomial_two_sided_half(5, 10) == 1.0
    for k, n in ((3, 17), (40, 100), (260, 480)):
        assert binomial_two_sided_half(k, n) == pytest.approx(
            stats.binomtest(k, n, 0.5).pvalue, rel=1e-9)


def test_mcnemar_counts_discordant_pairs():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1], bool)
    b = np.array([1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1], bool)
    m = mcnemar_exact(a, b)
    assert (m.only_first, m.only_second, m.both_right, m.both_wrong) == (6, 1, 3, 2)
    assert m.p_value == pytest.approx(2 * (1 + 7) / 128, abs=1e-15)
    assert mcnemar_exact(b, a).p_value == m.p_value


def test_mcnemar_rejects_mismatched_or_non_bool_input():
    with pytest.raises(ValueError, match="equal length"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="bool arrays"):
        mcnemar_exact(np.ones(3), np.ones(3))


def test_pair_decisions_reproduce_the_protocol_fold_accuracies():
    rng = np.random.default_rng(3)
    issame = np.tile(np.r_[np.ones(15, bool), np.zeros(15, bool)], 10)
    base = rng.standard_normal((300, 16))
    other = np.where(issame[:, None], base + 0.8 * rng.standard_normal((300, 16)),
                     rng.standard_normal((300, 16)))
    emb = np.empty((600, 16))
    emb[0::2], emb[1::2] = base, other
    result = evaluate_embeddings(emb, issame)
    correct = correct_pairs(result)
    per_fold = correct.reshape(10, 30).mean(1)
    np.testing.assert_allclose(per_fold, result.accuracies, atol=1e-12)
    assert correct.mean() == pytest.approx(result.accuracy_mean, abs=1e-12)
    assert 0.6 < result.accuracy_mean < 1.0  # neither trivial nor chance: the test can fail


def test_pair_decisions_rejects_wrong_threshold_count():
    with pytest.raises(ValueError, match=r"best_thresholds: expected shape \(10,\)"):
        pair_decisions(np.zeros(20), np.zeros(9), 10)


def _iv(mean, half):
    return Interval(3, mean, 0.0, mean - half, mean + half)


def test_ranking_shares_ranks_where_intervals_overlap():
    ranked = rank_with_ties({"arcface": _iv(0.95, 0.01), "cosface": _iv(0.945, 0.01),
                             "softmax": _iv(0.90, 0.01), "triplet": _iv(0.80, 0.05)})
    got = {r.name: (r.rank, r.tied_with) for r in ranked}
    assert [r.name for r in ranked] == ["arcface", "cosface", "softmax", "triplet"]
    assert got["arcface"] == (1, ("cosface",)) and got["cosface"] == (1, ("arcface",))
    assert got["softmax"] == (3, ()) and got["triplet"] == (4, ())


def test_ranking_without_intervals_ties_everything():
    ranked = rank_with_ties({"a": t_interval([0.9]), "b": t_interval([0.7])})
    assert [r.rank for r in ranked] == [1, 1] and ranked[0].tied_with == ("b",)


# ---- the report over seeds, from cells written the way the harness writes them --------------

def _toy_embeddings(rng, issame, noise):
    base = rng.standard_normal((issame.size, 8))
    other = np.where(issame[:, None], base + noise * rng.standard_normal(base.shape),
                     rng.standard_normal(base.shape))
    emb = np.empty((2 * issame.size, 8))
    emb[0::2], emb[1::2] = base, other
    return emb


def test_report_pairs_backends_by_seed_and_counts_discordant_pairs(tmp_path):
    import pandas as pd

    from bench.real import report as real_report
    from bench.report import results as res

    rng = np.random.default_rng(0)
    issame = np.tile(np.r_[np.ones(10, bool), np.zeros(10, bool)], 10)
    acc, correct = {}, {}
    for seed in (0, 1, 2):
        for backend, noise in (("pytorch", 0.7), ("gluon", 0.9)):
            result = evaluate_embeddings(_toy_embeddings(rng, issame, noise), issame)
            out = real_report.cells_dir(tmp_path, "toy", seed)
            cell = {"loss": "arcface", "backend": backend, "status": "ok", "config_hash": "h",
                    "family_hash": f"fam{seed}", "config": {"seed": seed}, "history": {},
                    "final_eval": {"heldout": {"acc_mean": result.accuracy_mean,
                                               "acc_std": result.accuracy_std}}}
            res.write_json(res.cell_path(out, "arcface", backend), cell)
            res.save_result(res.result_path(out, "arcface", backend, "heldout"), result)
            acc[backend, seed] = result.accuracy_mean
            correct[backend, seed] = correct_pairs(result)
    meta = {"config": {}, "seeds": [0, 1, 2], "command": "test", "environment": {
        "git_commit": "c", "cpu": "cpu", "python": "3", "packages": {}}}
    md = real_report.write_report(tmp_path, "toy", {s: f"fam{s}" for s in (0, 1, 2)}, meta,
                                  losses=["arcface", "cosface"], plots=False)
    g = pd.read_csv(tmp_path / "toy" / "gap.csv", comment="#").iloc[0]
    diffs = [acc["pytorch", s] - acc["gluon", s] for s in (0, 1, 2)]
    assert g.diff_mean == pytest.approx(np.mean(diffs), abs=1e-12)
    assert g.diff_ci95_lo == pytest.approx(t_interval(diffs).lo, abs=1e-12)
    b = sum(int((correct["pytorch", s] & ~correct["gluon", s]).sum()) for s in (0, 1, 2))
    c = sum(int((~correct["pytorch", s] & correct["gluon", s]).sum()) for s in (0, 1, 2))
    assert (g.mcnemar_torch_only, g.mcnemar_gluon_only) == (b, c) and b + c > 0
    assert g.mcnemar_pooled_p == pytest.approx(binomial_two_sided_half(b, b + c))
    rows = pd.read_csv(tmp_path / "toy" / "results.csv", comment="#")
    assert len(rows) == 6 and sorted(set(rows.seed)) == [0, 1, 2]
    # cosface was asked for and has no cell: 6 of (2 losses x 2 backends x 3 seeds)
    assert "cells finished: 6 of 12" in md.read_text()


def test_ranking_and_gap_plot_draws_one_seed_rows_without_an_interval(tmp_path):
    from bench.report.plots import ranking_and_gap

    nan = float("nan")
    ranks = [{"target": "heldout", "loss": loss, "backend": b, "rank": 1, "mean": m,
              "ci95_lo": lo, "ci95_hi": hi}
             for loss, m, lo, hi in (("arcface", 0.8, 0.7, 0.9), ("softmax", 0.7, nan, nan))
             for b in ("pytorch", "gluon")]
    gaps = [{"target": "heldout", "loss": "arcface", "diff_mean": 0.02, "diff_ci95_lo": 0.01,
             "diff_ci95_hi": 0.03, "ci_excludes_zero": "true"},
            {"target": "heldout", "loss": "softmax", "diff_mean": -0.01, "diff_ci95_lo": nan,
             "diff_ci95_hi": nan, "ci_excludes_zero": "n/a"}]
    path = ranking_and_gap(ranks, gaps, tmp_path / "gap.png")
    assert path.stat().st_size > 5000
    assert ranking_and_gap([], [], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
