"""Face verification metrics with the LFW protocol, as InsightFace's ``eval/verification.py``.

SPEC section 3. Pairs come interleaved: pair i is rows 2i and 2i+1 of the embeddings, with
``issame[i]`` its label. The protocol (Huang et al. 2007, "Labeled Faces in the Wild";
the code is David Sandberg's facenet ``lfw.py`` as adopted by InsightFace):

* embeddings are L2-normalised rows (sklearn's ``normalize``: a row whose norm is below
  10 * float64 eps is left as it is), and the distance of a pair is the squared L2 distance
  ``sum((e1 - e2)**2)`` in [0, 4]; a pair is predicted "same" when ``dist < threshold``;
* accuracy: ``KFold(n_splits=10, shuffle=False)`` over the pairs (the first ``P % 10`` folds
  are one pair longer). On the 9 training folds the threshold of best accuracy is picked
  from ``0, 0.01, ..., 3.99`` (the first one on ties, ``np.argmax``) and applied to the
  held-out fold; the result is the mean and (population) std of the 10 fold accuracies;
* ROC: per fold, TPR and FPR of the held-out fold at every threshold of that grid (0 where the
  fold has no positives / negatives), averaged over the folds;
* VAL@FAR: per fold, FAR of the training folds on the ``0, 0.001, ..., 3.999`` grid; if it
  reaches ``far_target`` the threshold is ``interp1d(far_train, thresholds, 'slinear')``
  evaluated at the target, else 0; VAL and FAR of the held-out fold at that threshold, then
  mean/std of VAL and mean of FAR over the folds.

The reference's numbers come out exactly (tests/verification_oracle.py is the literal loop;
tests/common/test_verification.py holds the two to 1e-12), but from cumulative counts: every
distance
is placed on each threshold grid once with ``searchsorted``, per-fold histograms of those
positions are summed cumulatively, so the counts of ``dist < t`` for every (fold, threshold)
cost O(P log T + folds * T) instead of the reference's O(P * T * folds) Python loop.

Two places where the reference gives no number and this module chooses one:

* ``interp1d(kind='slinear')`` with repeated x (``far_train`` is always 0 at the first
  thresholds) raises in SciPy >= 1.10; the reference was written for older SciPy, which
  evaluated the degree-1 B-spline on knots ``[x0, x..., x_last]``. ``_slinear_at`` is that
  evaluation: the segment from the *last* point with ``x <= target`` to the next point, with
  the B-spline's arithmetic; a zero-length final segment gives 0.
* ``calculate_val_far`` divides by the number of same (different) pairs and raises
  ``ZeroDivisionError`` on a fold without them; here that fold's VAL/FAR is NaN (so the means
  are NaN: visible, never a silent number). Accuracy and ROC are defined there as in the
  reference.

Added metrics, defined here (the reference has none):

* ``eer``: equal error rate on the mean ROC, at the first crossing of FPR and FNR = 1 - TPR
  along the threshold grid, interpolated linearly between the two grid points around it
  (where the curve never crosses, the mean of FPR and FNR at the closest point);
* ``auc``: trapezoidal area under the mean ROC, closed with (0, 0) and (1, 1);
* ``xnorm``: mean L2 norm of the un-normalised embeddings (with flip test: over the plain and
  the flipped embeddings separately, as InsightFace's ``test`` does, not of their sum).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)


@dataclass(frozen=True)
class VerificationResult:
    """Everything one evaluation produces; ``to_dict`` gives the scalars for tables."""

    accuracy_mean: float
    accuracy_std: float
    accuracies: np.ndarray  # (folds,) held-out accuracy of each fold
    best_thresholds: np.ndarray  # (folds,) threshold picked on each fold's training part
    val_mean: float
    val_std: float
    far_mean: float
    vals: np.ndarray  # (folds,)
    fars: np.ndarray  # (folds,)
    val_thresholds: np.ndarray  # (folds,) threshold reaching far_target on the training part
    eer: float
    auc: float
    xnorm: float
    fpr: np.ndarray  # (len(ACCURACY_THRESHOLDS),) mean ROC over the folds
    tpr: np.ndarray
    thresholds: np.ndarray  # the grid of fpr/tpr
    distances: np.ndarray  # (P,) squared L2 distance of each pair, normalised embeddings
    issame: np.ndarray  # (P,) bool
    nrof_folds: int
    far_target: float
    flip: bool | None = None  # None: embeddings were given, not computed by ``evaluate``
    unflipped: VerificationResult | None = None  # with flip test: the plain embeddings alone

    @property
    def threshold(self) -> float:
        """The operating threshold: the mean of the folds' best thresholds."""
        return float(np.mean(self.best_thresholds))

    def to_dict(self) -> dict[str, float | int | bool | None]:
        out = {
            "accuracy_mean": float(self.accuracy_mean),
            "accuracy_std": float(self.accuracy_std),
            "val_mean": float(self.val_mean),
            "val_std": float(self.val_std),
            "far_mean": float(self.far_mean),
            "far_target": float(self.far_target),
            "eer": float(self.eer),
            "auc": float(self.auc),
            "xnorm": float(self.xnorm),
            "threshold": self.threshold,
            "nrof_pairs": int(self.issame.size),
            "nrof_folds": int(self.nrof_folds),
            "flip": self.flip,
        }
        if self.unflipped is not None:
            out["accuracy_noflip_mean"] = float(self.unflipped.accuracy_mean)
            out["accuracy_noflip_std"] = float(self.unflipped.accuracy_std)
        return out


def _as_issame(issame) -> np.ndarray:
    arr = np.asarray(issame)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"issame: expected a non-empty 1-D sequence, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all()):
            bad = arr[~np.isin(arr, (0, 1))][:3] if np.issubdtype(arr.dtype, np.number) else []
            raise ValueError(
                f"issame: expected booleans (or 0/1), got dtype {arr.dtype} {list(bad)}"
            )
        arr = arr.astype(bool)
    return arr


def check_finite_rows(embeddings: np.ndarray, name: str = "embeddings") -> None:
    """Raise naming how many rows hold NaN/inf: such rows would otherwise score as 'different'."""
    bad = ~np.isfinite(embeddings).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name}: {rows.size} of {embeddings.shape[0]} rows contain NaN or inf "
            f"(first rows {rows[:5].tolist()}); refusing to score them"
        )


def l2_normalize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows / their L2 norm, the norms), as sklearn.preprocessing.normalize (tiny norms kept)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    divisor = np.where(norms < 10 * np.finfo(norms.dtype).eps, 1.0, norms)
    return x / divisor[:, None], norms


def pair_distances(normed: np.ndarray) -> np.ndarray:
    """Squared L2 distance of rows 2i and 2i+1, summed as the reference sums it (bit-identical)."""
    diff = np.subtract(normed[0::2], normed[1::2])
    np.square(diff, out=diff)  # in place: the reference's np.square(diff) without a copy
    return np.sum(diff, 1)


def fold_ids(nrof_pairs: int, nrof_folds: int) -> np.ndarray:
    """Fold of each pair under KFold(k, shuffle=False): contiguous, the first P % k one longer."""
    sizes = np.full(nrof_folds, nrof_pairs // nrof_folds)
    sizes[: nrof_pairs % nrof_folds] += 1
    return np.repeat(np.arange(nrof_folds), sizes)


def _counts_below(dist, issame, folds, nrof_folds, thresholds):
    """(folds, 2, T) int counts of pairs with dist < thresholds[j]; axis 1: [different, same]."""
    t = thresholds.size
    # dist < thresholds[j]  <=>  j >= (number of thresholds <= dist)
    pos = np.searchsorted(thresholds, dist, side="right")
    flat = (folds * 2 + issame) * (t + 1) + pos
    hist = np.bincount(flat, minlength=nrof_folds * 2 * (t + 1)).reshape(nrof_folds, 2, t + 1)
    return np.cumsum(hist, axis=2)[:, :, :t]


def _train_test(per_fold: np.ndarray, nrof_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of each fold's training part (all other folds) and test part (the fold)."""
    if nrof_folds == 1:  # InsightFace's LFold: one "fold" trains and tests on everything
        return per_fold, per_fold
    return per_fold.sum(axis=0, keepdims=True) - per_fold, per_fold


def _ratio_or_zero(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den == 0, 0.0, num / np.maximum(den, 1))


def _slinear_at(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """interp1d(x, y, kind='slinear')(target) for non-decreasing x, as pre-1.10 SciPy evaluated it.

    The degree-1 B-spline on knots [x0, x..., x_last] with coefficients y: SciPy finds the last
    knot <= target (so among repeated x, the last one) and evaluates the two basis functions
    with de Boor's recursion; a zero-length segment contributes nothing.
    """
    i = int(np.searchsorted(x, target, side="right")) - 1
    i = min(max(i, 0), x.size - 2)
    xa, xb = x[i], x[i + 1]
    if xb == xa:
        return 0.0
    w = 1.0 / (xb - xa)
    return 0.0 + y[i] * (w * (xb - target)) + y[i + 1] * (w * (target - xa))


def _accuracy_and_roc(dist, issame, folds, nrof_folds):
    t = ACCURACY_THRESHOLDS
    below = _counts_below(dist, issame, folds, nrof_folds, t)
    n = np.stack([np.bincount(folds[~issame], minlength=nrof_folds),
                  np.bincount(folds[issame], minlength=nrof_folds)], axis=1)[:, :, None]
    below_train, below_test = _train_test(below, nrof_folds)
    n_train, n_test = _train_test(n, nrof_folds)
    # accuracy = (tp + tn) / n with tn = different pairs not below the threshold
    correct_train = below_train[:, 1] + (n_train[:, 0] - below_train[:, 0])
    acc_train = correct_train / (n_train[:, 0] + n_train[:, 1])
    best = np.argmax(acc_train, axis=1)
    rows = np.arange(nrof_folds)
    correct_test = below_test[rows, 1, best] + (n_test[:, 0, 0] - below_test[rows, 0, best])
    accuracies = correct_test / (n_test[:, 0, 0] + n_test[:, 1, 0])
    tprs = _ratio_or_zero(below_test[:, 1], n_test[:, 1])
    fprs = _ratio_or_zero(below_test[:, 0], n_test[:, 0])
    return accuracies, t[best], np.mean(tprs, 0), np.mean(fprs, 0)


def _val_far(dist, issame, folds, nrof_folds, far_target):
    t = VAL_THRESHOLDS
    below = _counts_below(dist, issame, folds, nrof_folds, t)[:, 0]
    n_diff = np.bincount(folds[~issame], minlength=nrof_folds)[:, None]
    below_train, _ = _train_test(below, nrof_folds)
    n_diff_train, _ = _train_test(n_diff, nrof_folds)
    chosen = np.full(nrof_folds, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        far_train = below_train / n_diff_train
    for f in range(nrof_folds):  # one interpolation per fold; the grid work is done above
        if n_diff_train[f, 0] == 0:
            continue
        if np.max(far_train[f]) >= far_target:
            chosen[f] = _slinear_at(far_train[f], t, far_target)
        else:
            chosen[f] = 0.0
    # each pair is tested in its own fold (with one fold, that fold is everything)
    accept = dist < chosen[folds]  # NaN thresholds accept nothing
    true_accept = np.bincount(folds[issame & accept], minlength=nrof_folds)
    false_accept = np.bincount(folds[~issame & accept], minlength=nrof_folds)
    n_same_test = np.bincount(folds[issame], minlength=nrof_folds)
    n_diff_test = n_diff[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        vals = np.where(n_same_test == 0, np.nan, true_accept / n_same_test)
        fars = np.where(n_diff_test == 0, np.nan, false_accept / n_diff_test)
    undefined = np.isnan(chosen)
    vals[undefined] = np.nan
    fars[undefined] = np.nan
    return vals, fars, chosen


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """EER on a ROC ordered by increasing threshold (see the module docstring for the rule)."""
    fnr = 1.0 - tpr
    gap = fpr - fnr  # non-decreasing along the threshold grid
    crossed = np.flatnonzero(gap >= 0)
    if crossed.size == 0 or crossed[0] == 0:
        k = int(np.argmin(np.abs(gap)))
        return float((fpr[k] + fnr[k]) / 2)
    k = int(crossed[0])
    a = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(fpr[k - 1] + a * (fpr[k] - fpr[k - 1]))


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under a ROC ordered by increasing threshold, closed at (0,0) and (1,1)."""
    x = np.concatenate([[0.0], fpr, [1.0]])
    y = np.concatenate([[0.0], tpr, [1.0]])
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def evaluate_embeddings(embeddings, issame, nrof_folds: int = 10,
                        far_target: float = 1e-3) -> VerificationResult:
    """LFW-protocol metrics of interleaved pair embeddings (2P x D, not normalised)."""
    same = _as_issame(issame)
    raw = np.asarray(embeddings, dtype=np.float64)
    if raw.ndim != 2:
        raise ValueError(f"embeddings: expected a 2-D array (2P x D), got shape {raw.shape}")
    if raw.shape[0] % 2:
        raise ValueError(f"embeddings: expected an even number of rows (pairs), got {raw.shape[0]}")
    if raw.shape[0] != 2 * same.size:
        raise ValueError(
            f"embeddings: {raw.shape[0]} rows do not match issame: {same.size} pairs need "
            f"{2 * same.size} rows"
        )
    if isinstance(nrof_folds, bool) or not isinstance(nrof_folds, int | np.integer) \
            or not 1 <= nrof_folds <= same.size:
        raise ValueError(f"nrof_folds: expected an int in [1, {same.size}], got {nrof_folds!r}")
    if not 0.0 < far_target <= 1.0:
        raise ValueError(f"far_target: expected a value in (0, 1], got {far_target!r}")
    check_finite_rows(raw)
    normed, norms = l2_normalize(raw)
    dist = pair_distances(normed)
    folds = fold_ids(same.size, nrof_folds)
    accuracies, best, tpr, fpr = _accuracy_and_roc(dist, same, folds, nrof_folds)
    vals, fars, chosen = _val_far(dist, same, folds, nrof_folds, far_target)
    return VerificationResult(
        accuracy_mean=float(np.mean(accuracies)), accuracy_std=float(np.std(accuracies)),
        accuracies=accuracies, best_thresholds=best,
        val_mean=float(np.mean(vals)), val_std=float(np.std(vals)), far_mean=float(np.mean(fars)),
        vals=vals, fars=fars, val_thresholds=chosen,
        eer=equal_error_rate(fpr, tpr), auc=roc_auc(fpr, tpr),
        xnorm=float(np.mean(norms)),
        fpr=fpr, tpr=tpr, thresholds=ACCURACY_THRESHOLDS, distances=dist, issame=same,
        nrof_folds=int(nrof_folds), far_target=float(far_target),
    )


def to_network_input(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x 3 RGB -> float32 N x 3 x H x W, (x / 255 - 0.5) / 0.5 (SPEC section 3)."""
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
    return (x / 255 - 0.5) / 0.5


def embed_images(embed_fn: Callable[[np.ndarray], np.ndarray], images, batch_size: int = 64,
                 flip: bool = True, progress: bool = True):
    """Run ``embed_fn`` over the images in batches; returns (plain, flipped or None), float64.

    Each distinct image is embedded once and its embedding copied to every position it holds:
    pair lists reuse images (the suite's 600 held-out AT&T pairs hold 100 distinct images, Yale
    B's 1,000 pairs 614, LFW View 1's 1,000 DevTest pairs 1,549), and inference is a function of
    the image alone. As InsightFace's
    ``test``, the final batch is the last ``batch_size`` images (overlapping the previous batch)
    so the network always sees one input shape.
    """
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[3] != 3 or imgs.dtype != np.uint8:
        raise ValueError(
            f"images: expected uint8 N x H x W x 3 RGB, got {imgs.dtype} of shape {imgs.shape}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    distinct, where = distinct_images(imgs)
    out = [emb[where] for emb in _embed_batches(embed_fn, distinct, batch_size, flip, progress)]
    for emb, name in zip(out, ("embeddings", "flipped embeddings")):
        check_finite_rows(emb, name)
    return out[0], (out[1] if flip else None)


def distinct_images(imgs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct images in order of first appearance, index of each image among them)."""
    index: dict[bytes, int] = {}
    keep: list[int] = []
    where = np.empty(imgs.shape[0], dtype=np.int64)
    for i, img in enumerate(imgs):
        key = img.tobytes()
        if key not in index:
            index[key] = len(keep)
            keep.append(i)
        where[i] = index[key]
    return imgs[np.asarray(keep, dtype=np.int64)], where


def _embed_batches(embed_fn, imgs: np.ndarray, batch_size: int, flip: bool, progress: bool):
    n = imgs.shape[0]
    size = min(batch_size, n)
    starts = list(range(0, n, size))
    variants = [False, True] if flip else [False]
    out = [None] * len(variants)
    from tqdm import tqdm  # only the embedding loop needs it

    with tqdm(total=len(starts) * len(variants), desc="verification", unit="batch",
              disable=not progress) as bar:
        for v, flipped in enumerate(variants):
            for begin in starts:
                end = min(begin + size, n)
                x = to_network_input(imgs[end - size:end])
                if flipped:
                    x = np.ascontiguousarray(x[:, :, :, ::-1])
                e = np.asarray(embed_fn(x))
                if e.ndim != 2 or e.shape[0] != size:
                    raise ValueError(
                        f"embed_fn: expected {size} x D embeddings for a batch of {size}, "
                        f"got shape {e.shape}"
                    )
                if out[v] is None:
                    out[v] = np.zeros((n, e.shape[1]), dtype=np.float64)
                out[v][begin:end] = e[size - (end - begin):]
                bar.update(1)
    return out


def evaluate(embed_fn: Callable[[np.ndarray], np.ndarray], images, issame, batch_size: int = 64,
             flip: bool = True, progress: bool = True, nrof_folds: int = 10,
             far_target: float = 1e-3) -> VerificationResult:
    """Embed the images of a decoded .bin and score them; with ``flip`` e(img) + e(flip(img)).

    ``images``: uint8 N x H x W x 3 RGB, pair i = images 2i and 2i+1. ``embed_fn`` takes float32
    N x 3 x H x W normalised as ``to_network_input`` and returns N x D (not normalised). With
    flip test the result also carries the plain embeddings' result in ``unflipped``.
    """
    same = _as_issame(issame)
    n = np.shape(images)[0] if np.ndim(images) else 0
    if n % 2:
        raise ValueError(f"images: expected an even number of images (pairs), got {n}")
    if n != 2 * same.size:
        raise ValueError(f"images: {n} images do not match issame: {same.size} pairs need "
                         f"{2 * same.size} images")
    plain, flipped = embed_images(embed_fn, images, batch_size, flip, progress)
    if not flip:
        return dataclasses.replace(evaluate_embeddings(plain, same, nrof_folds, far_target),
                                   flip=False)
    unflipped = dataclasses.replace(evaluate_embeddings(plain, same, nrof_folds, far_target),
                                    flip=False)
    result = evaluate_embeddings(plain + flipped, same, nrof_folds, far_target)
    xnorm = float(np.mean(np.linalg.norm(np.concatenate([plain, flipped]), axis=1)))
    return dataclasses.replace(result, xnorm=xnorm, flip=True, unflipped=unflipped)
