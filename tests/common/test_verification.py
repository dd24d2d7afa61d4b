"""common.verification against the literal InsightFace loop (tests/verification_oracle.py).

The oracle costs about a second per call whatever the size (its loops are over thresholds),
so cases use small pair counts, with one 6000-pair LFW-sized check.
"""

from __future__ import annotations

import numpy as np
import pytest
import verification_oracle as oracle
from scipy.interpolate import interp1d

from common import verification as V

EXACT = ("accuracies", "best_thresholds", "distances", "tpr", "fpr", "vals", "fars",
         "val_thresholds")
SCALARS = ("accuracy_mean", "accuracy_std", "val_mean", "val_std", "far_mean")


def assert_matches_oracle(emb, issame, nrof_folds=10):
    ours = V.evaluate_embeddings(emb, issame, nrof_folds=nrof_folds)
    ref = oracle.evaluate(emb, issame, nrof_folds=nrof_folds)
    for key in EXACT:
        np.testing.assert_array_equal(getattr(ours, key), ref[key], err_msg=key)
    for key in SCALARS:
        assert abs(getattr(ours, key) - ref[key]) <= 1e-12, (key, getattr(ours, key), ref[key])
    assert ours.xnorm == pytest.approx(ref["xnorm"], rel=1e-12, abs=1e-12)
    return ours


def balanced_labels(nrof_pairs, rng):
    """Random labels where every run of 3 or more consecutive pairs holds both kinds.

    The reference divides by the number of same (different) pairs of every fold, so the
    oracle needs both kinds in each fold; blocks of two pairs are [same, diff] or [diff, same].
    """
    flip = np.repeat(rng.random((nrof_pairs + 1) // 2) < 0.5, 2)[:nrof_pairs]
    return (np.arange(nrof_pairs) % 2 == 0) ^ flip


def clustered(nrof_pairs, dim, seed, noise=1.0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(2 * nrof_pairs, dim)) * rng.uniform(0.5, 30, size=(2 * nrof_pairs, 1))
    issame = balanced_labels(nrof_pairs, rng)
    emb[1::2][issame] = emb[0::2][issame] + noise * rng.normal(size=(int(issame.sum()), dim))
    return emb, issame


@pytest.mark.parametrize("nrof_pairs,dim,seed,noise", [
    (37, 16, 0, 1.0),     # 37 pairs: folds of 4 and 3
    (123, 64, 1, 0.6),
    (200, 8, 2, 2.0),
])
def test_random_embeddings_match_oracle(nrof_pairs, dim, seed, noise):
    emb, issame = clustered(nrof_pairs, dim, seed, noise)
    r = assert_matches_oracle(emb, issame)
    assert 0.5 < r.accuracy_mean <= 1.0  # the data are separable enough to beat chance


def test_lfw_sized_float32_input_matches_oracle():
    emb, issame = clustered(6000, 512, 3, noise=1.1)
    r = assert_matches_oracle(emb.astype(np.float32), issame)
    assert r.accuracies.shape == (10,) and r.vals.shape == (10,)


def test_ties_from_repeated_pairs_match_oracle():
    emb, issame = clustered(7, 4, 4, noise=0.8)
    reps = np.arange(53) % 7  # 53 pairs: only 7 distinct distances, folds of 6 and 5
    pair_rows = np.stack([2 * reps, 2 * reps + 1], axis=1).ravel()
    labels = balanced_labels(53, np.random.default_rng(5))  # disagree across equal distances
    assert_matches_oracle(emb[pair_rows], labels)


def test_all_equal_distances_match_oracle():
    rng = np.random.default_rng(6)
    pair = rng.normal(size=(2, 5))
    emb = np.tile(pair, (41, 1))
    r = assert_matches_oracle(emb, balanced_labels(41, rng))
    assert np.ptp(r.distances) == 0


def test_distances_on_the_threshold_grids_match_oracle():
    # identical -> 0, orthogonal -> 2, opposite -> 4, zero vector vs unit -> 1: all exact,
    # and 0, 1, 2 are points of both grids, so `dist < threshold` is tested at equality
    e = np.eye(3)
    kinds = [(e[0], e[0]), (e[0], e[1]), (e[0], -e[0]), (np.zeros(3), e[2]), (e[1], 3 * e[1])]
    rng = np.random.default_rng(7)
    issame = balanced_labels(67, rng)
    # same pairs mostly identical or scaled (distance 0), with some of every kind mixed in
    picks = np.where(issame, rng.choice([0, 4], size=67), rng.integers(1, 4, size=67))
    picks = np.where(rng.random(67) < 0.2, rng.integers(0, len(kinds), size=67), picks)
    emb = np.stack([v for k in picks for v in kinds[k]])
    r = assert_matches_oracle(emb, issame)
    assert set(np.unique(r.distances)) <= {0.0, 1.0, 2.0, 4.0}


def test_quantised_angles_match_oracle():
    rng = np.random.default_rng(8)
    issame = balanced_labels(90, rng)
    first = rng.integers(0, 16, size=90)
    second = first + np.where(issame, rng.integers(-2, 3, size=90), rng.integers(0, 16, size=90))
    angles = np.stack([first, second], axis=1).ravel() * np.pi / 8
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1) * rng.uniform(1, 5, size=(180, 1))
    r = assert_matches_oracle(emb, issame)
    assert np.unique(np.round(r.distances, 9)).size <= 9  # 9 angle gaps: ties and near-ties


@pytest.mark.parametrize("nrof_folds", [1, 3])
def test_other_fold_counts_match_oracle(nrof_folds):
    emb, issame = clustered(58, 12, 9, noise=1.5)
    assert_matches_oracle(emb, issame, nrof_folds=nrof_folds)


def test_fold_without_same_pairs_gives_nan_val_where_reference_divides_by_zero():
    emb, issame = clustered(40, 10, 10, noise=1.0)
    issame[:4] = False  # fold 0 (pairs 0-3) has no same pair
    issame[4:8] = True
    normed = oracle.normalize(emb)
    with pytest.raises(ZeroDivisionError):
        oracle.calculate_val(V.VAL_THRESHOLDS, normed[0::2], normed[1::2], issame, 1e-3)
    ours = V.evaluate_embeddings(emb, issame)
    tpr, fpr, acc, best, _ = oracle.calculate_roc(
        V.ACCURACY_THRESHOLDS, normed[0::2], normed[1::2], issame)
    np.testing.assert_array_equal(ours.accuracies, acc)
    np.testing.assert_array_equal(ours.tpr, tpr)
    assert np.isnan(ours.vals[0]) and np.isfinite(ours.vals[1:]).all()
    assert np.isnan(ours.val_mean) and np.isfinite(ours.accuracy_mean)


def test_kfold_ids_match_sklearn():
    for n, k in [(37, 10), (6000, 10), (7, 7), (58, 3)]:
        ids = V.fold_ids(n, k)
        for f, (_, test) in enumerate(oracle.KFold(n_splits=k).split(np.arange(n))):
            np.testing.assert_array_equal(np.flatnonzero(ids == f), test)


def random_far_curve(rng, size):
    """Non-decreasing FAR-like values from 0 with long plateaus, as far_train is."""
    steps = rng.integers(0, 4, size=size) * (rng.random(size) < 0.3)
    return np.cumsum(steps) / max(1, steps.sum())


def test_slinear_emulation_matches_old_scipy_spline_on_plateaus():
    rng = np.random.default_rng(11)
    y = np.arange(0, 4, 0.001)[:300]
    for _ in range(40):
        x = random_far_curve(rng, 300)
        targets = np.concatenate([np.unique(x), rng.uniform(0, x[-1], 5), [x[-1]]])
        for t in targets:
            got = V._slinear_at(x, y, t)
            want = float(oracle.old_slinear(x, y, t))
            assert got == want, (t, got, want)


def test_old_slinear_emulation_equals_interp1d_where_scipy_accepts_the_data():
    rng = np.random.default_rng(12)
    x = np.sort(rng.uniform(0, 1, 50))
    y = rng.normal(size=50)
    t = rng.uniform(x[0], x[-1], 20)
    np.testing.assert_allclose(oracle.old_slinear(x, y, t), interp1d(x, y, kind="slinear")(t),
                               rtol=0, atol=1e-15)


def test_eer_and_auc_on_a_known_roc():
    fpr = np.array([0.0, 0.2, 0.6, 1.0])
    tpr = np.array([0.0, 0.5, 0.9, 1.0])
    # FNR = 1, .5, .1, 0 crosses FPR between points 1 and 2 at a = .3 / .8
    assert V.equal_error_rate(fpr, tpr) == pytest.approx(0.2 + 0.375 * 0.4, abs=1e-15)
    assert V.roc_auc(fpr, tpr) == pytest.approx(0.1 * 0.5 + 0.4 * 1.4 / 2 + 0.4 * 1.9 / 2)


def test_perfect_and_random_embeddings_give_the_expected_metrics():
    rng = np.random.default_rng(13)
    base = rng.normal(size=(100, 8))
    issame = np.arange(100) % 2 == 0
    other = np.where(issame[:, None], base, -base)  # same: distance 0, different: 4
    emb = np.stack([base, other], axis=1).reshape(200, 8)
    r = V.evaluate_embeddings(emb, issame)
    assert (r.accuracy_mean, r.eer, r.auc) == (1.0, 0.0, 1.0)
    # no different pair is ever accepted, so FAR never reaches 1e-3: as in InsightFace the
    # VAL threshold falls back to 0 and VAL is 0, not 1
    assert r.val_mean == 0.0 and (r.val_thresholds == 0).all()
    noise = V.evaluate_embeddings(rng.normal(size=(4000, 32)), rng.random(2000) < 0.5)
    assert 0.4 < noise.auc < 0.6 and 0.4 < noise.eer < 0.6


def test_bad_inputs_raise_clear_errors():
    emb = np.random.default_rng(14).normal(size=(20, 4))
    issame = np.arange(10) % 2 == 0
    with pytest.raises(ValueError, match="18 rows do not match issame: 10 pairs"):
        V.evaluate_embeddings(emb[:18], issame)
    with pytest.raises(ValueError, match="even number of rows"):
        V.evaluate_embeddings(emb[:19], issame)
    bad = emb.copy()
    bad[[3, 7, 11], 1] = np.nan
    with pytest.raises(ValueError, match=r"3 of 20 rows contain NaN or inf \(first rows \[3, 7"):
        V.evaluate_embeddings(bad, issame)
    with pytest.raises(ValueError, match="issame: expected booleans"):
        V.evaluate_embeddings(emb, np.arange(10) % 3)
    for folds in (0, 11, True, 2.5):
        with pytest.raises(ValueError, match="nrof_folds"):
            V.evaluate_embeddings(emb, issame, nrof_folds=folds)
    for far in (0.0, 1.5):
        with pytest.raises(ValueError, match="far_target"):
            V.evaluate_embeddings(emb, issame, far_target=far)


class LinearEmbedder:
    """A fixed random projection of the flattened input; records every batch it sees."""

    def __init__(self, shape, dim=6, seed=15):
        self.w = np.random.default_rng(seed).normal(size=(int(np.prod(shape)), dim))
        self.batches = []

    def __call__(self, x):
        self.batches.append(x)
        return x.reshape(len(x), -1).astype(np.float64) @ self.w


def image_pairs(nrof_pairs=23, size=5, seed=16):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2 * nrof_pairs, size, size, 3), dtype=np.uint8)
    return images, rng.random(nrof_pairs) < 0.5


@pytest.mark.parametrize("batch_size", [7, 46, 100])
def test_evaluate_embeds_with_flip_sum_in_fixed_size_batches(batch_size):
    images, issame = image_pairs()
    fn = LinearEmbedder((3, 5, 5))
    r = V.evaluate(fn, images, issame, batch_size=batch_size, progress=False)
    x = V.to_network_input(images).astype(np.float64)  # what embed_fn receives, float32
    plain = fn.w.T @ x.reshape(46, -1).T
    flipped = fn.w.T @ x[:, :, :, ::-1].reshape(46, -1).T
    want = V.evaluate_embeddings((plain + flipped).T, issame)
    np.testing.assert_allclose(r.distances, want.distances, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(r.accuracies, want.accuracies)
    norms = np.linalg.norm(np.concatenate([plain.T, flipped.T]), axis=1)
    assert r.xnorm == pytest.approx(norms.mean(), rel=1e-9)
    assert r.flip is True and r.unflipped is not None and r.unflipped.flip is False
    assert r.to_dict()["accuracy_noflip_mean"] == r.unflipped.accuracy_mean
    size = min(batch_size, 46)
    assert len(fn.batches) == 2 * -(-46 // size)
    for b in fn.batches:
        assert b.dtype == np.float32 and b.shape == (size, 3, 5, 5)
        assert b.min() >= -1.0 and b.max() <= 1.0


def test_evaluate_embeds_each_distinct_image_once():
    """Pair lists reuse images (AT&T's 600 held-out pairs hold 100): each distinct image is
    embedded once, its embedding copied to every position, the scores those of embedding every
    position; a non-finite embedding is counted at every position its image holds."""
    rng = np.random.default_rng(5)
    pool = rng.integers(0, 256, size=(7, 5, 5, 3), dtype=np.uint8)
    order = rng.integers(0, 7, size=40)
    order[:7] = np.arange(7)  # every pool image appears
    images, issame = pool[order], rng.random(20) < 0.5
    fn = LinearEmbedder((3, 5, 5))
    r = V.evaluate(fn, images, issame, batch_size=4, progress=False)
    assert sum(b.shape[0] for b in fn.batches) == 2 * 8  # 7 distinct: batches of 4, 4 (overlap)
    x = V.to_network_input(images).astype(np.float64)
    plain = x.reshape(40, -1) @ fn.w
    flipped = x[:, :, :, ::-1].reshape(40, -1) @ fn.w
    want = V.evaluate_embeddings(plain + flipped, issame)
    np.testing.assert_allclose(r.distances, want.distances, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(r.accuracies, want.accuracies)
    distinct, where = V.distinct_images(images)
    np.testing.assert_array_equal(distinct, pool)
    np.testing.assert_array_equal(where, order)

    def nan_for_pool_image_3(batch):
        out = fn(batch)
        out[np.all(batch == V.to_network_input(pool[3:4])[0], axis=(1, 2, 3))] = np.nan
        return out

    count = int((order == 3).sum())
    with pytest.raises(ValueError, match=f"embeddings: {count} of 40 rows contain NaN"):
        V.evaluate(nan_for_pool_image_3, images, issame, batch_size=4, flip=False,
                   progress=False)


def test_evaluate_without_flip_scores_the_plain_embeddings():
    images, issame = image_pairs()
    fn = LinearEmbedder((3, 5, 5))
    r = V.evaluate(fn, images, issame, batch_size=10, flip=False, progress=False)
    x = V.to_network_input(images).reshape(46, -1).astype(np.float64)
    want = V.evaluate_embeddings(x @ fn.w, issame)
    np.testing.assert_allclose(r.distances, want.distances, rtol=0, atol=1e-9)
    assert r.flip is False and r.unflipped is None and len(fn.batches) == 5
    values = r.to_dict()
    assert all(v is None or isinstance(v, bool | int | float) for v in values.values())
    assert values["nrof_pairs"] == 23 and values["flip"] is False


def test_evaluate_reports_bad_images_and_embeddings():
    images, issame = image_pairs()
    fn = LinearEmbedder((3, 5, 5))
    with pytest.raises(ValueError, match="even number of images"):
        V.evaluate(fn, images[:45], issame, progress=False)
    with pytest.raises(ValueError, match="44 images do not match issame: 23 pairs"):
        V.evaluate(fn, images[:44], issame, progress=False)
    with pytest.raises(ValueError, match="uint8 N x H x W x 3"):
        V.evaluate(fn, images.astype(np.float32), issame, progress=False)
    with pytest.raises(ValueError, match="embed_fn: expected 8 x D"):
        V.evaluate(lambda x: fn(x)[:-1], images, issame, batch_size=8, progress=False)

    fn = LinearEmbedder((3, 5, 5))

    def nan_on_flipped(x):
        out = fn(x)
        if len(fn.batches) == 7:  # 46 images in batches of 8: call 7 starts the flipped pass
            out[:2] = np.nan
        return out

    with pytest.raises(ValueError, match="flipped embeddings: 2 of 46 rows contain NaN"):
        V.evaluate(nan_on_flipped, images, issame, batch_size=8, progress=False)


def test_plots_draw_every_run_and_the_threshold(tmp_path):
    from bench.report.verification_plots import plot_distance_distribution, plot_roc

    a = V.evaluate_embeddings(*clustered(300, 8, 17, noise=0.8))
    b = V.evaluate_embeddings(*clustered(300, 8, 18, noise=1.6))
    fig = plot_roc({"tight": a, "loose": b}, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 1000
    assert len(fig.axes[0].get_lines()) == 2
    fig = plot_distance_distribution(a, tmp_path / "dist.png")
    assert (tmp_path / "dist.png").stat().st_size > 1000
    xs = [line.get_xdata()[0] for line in fig.axes[0].get_lines()]
    assert xs == [a.threshold]
    with pytest.raises(ValueError, match="runs: expected at least one"):
        plot_roc({})


def test_perf_rows_have_the_section_format():
    from bench.perf.sections.verification import measure

    rows = measure(quick=True, nrof_pairs=100, dim=16)
    assert [r["impl"] for r in rows] == ["InsightFace literal loop", "common.verification"]
    for r in rows:
        assert r["section"] == "verification" and r["min_s"] <= r["median_s"] <= r["max_s"]
    assert rows[0]["ratio"] == 1.0 and 0 < rows[1]["ratio"] < 1.0
