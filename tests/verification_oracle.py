"""Literal re-implementation of InsightFace's ``eval/verification.py`` metrics (the test oracle).

Written from the reference's structure (calculate_roc / calculate_accuracy / calculate_val /
calculate_val_far / evaluate, and the XNorm loop of ``test``), one threshold and one fold at a
time, with sklearn's ``KFold`` and ``normalize`` as the reference uses them. It is deliberately
slow: ``common.verification`` must give the same numbers, only vectorised.

One piece cannot be called as the reference calls it: ``scipy.interpolate.interp1d(far_train,
thresholds, kind='slinear')``. ``far_train`` always has repeated values (it is 0 at the first
thresholds), and SciPy >= 1.10 rejects duplicate x in ``make_interp_spline`` ("Expect x to not
have duplicates"), so the reference itself crashes on current SciPy. The SciPy releases the
reference was written against built the degree-1 spline without that check, as
``BSpline(t=[x0, x..., x_last], c=y, k=1)`` evaluated inside the x range; ``old_slinear``
rebuilds exactly that object with ``BSpline.construct_fast`` (no check), after interp1d's
bounds check and its stable sort of x.

Where the reference divides by zero (``calculate_val_far`` on a fold without same or without
different pairs) this oracle raises ``ZeroDivisionError`` as the reference does.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import BSpline
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize


class LFold:
    def __init__(self, n_splits=2, shuffle=False):
        self.n_splits = n_splits
        if self.n_splits > 1:
            self.k_fold = KFold(n_splits=n_splits, shuffle=shuffle)

    def split(self, indices):
        if self.n_splits > 1:
            return self.k_fold.split(indices)
        return [(indices, indices)]


def old_slinear(x, y, x_new):
    """``interp1d(x, y, kind='slinear')(x_new)`` as SciPy ran it before the duplicate check."""
    x = np.array(x, dtype=np.float64)
    y = np.array(y, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    x, y = x[order], y[order]
    if np.any(np.asarray(x_new) < x[0]) or np.any(np.asarray(x_new) > x[-1]):
        raise ValueError("A value in x_new is outside the interpolation range.")
    spline = BSpline.construct_fast(np.r_[x[0], x, x[-1]], np.ascontiguousarray(y), 1)
    return spline(x_new)


def calculate_accuracy(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))
    tpr = 0 if (tp + fn == 0) else float(tp) / float(tp + fn)
    fpr = 0 if (fp + tn == 0) else float(fp) / float(fp + tn)
    acc = float(tp + tn) / dist.size
    return tpr, fpr, acc


def calculate_roc(thresholds, embeddings1, embeddings2, actual_issame, nrof_folds=10):
    nrof_pairs = min(len(actual_issame), embeddings1.shape[0])
    nrof_thresholds = len(thresholds)
    k_fold = LFold(n_splits=nrof_folds, shuffle=False)
    tprs = np.zeros((nrof_folds, nrof_thresholds))
    fprs = np.zeros((nrof_folds, nrof_thresholds))
    accuracy = np.zeros(nrof_folds)
    best = np.zeros(nrof_folds)
    indices = np.arange(nrof_pairs)
    diff = np.subtract(embeddings1, embeddings2)
    dist = np.sum(np.square(diff), 1)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        acc_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, _, acc_train[threshold_idx] = calculate_accuracy(
                threshold, dist[train_set], actual_issame[train_set])
        best_threshold_index = np.argmax(acc_train)
        best[fold_idx] = thresholds[best_threshold_index]
        for threshold_idx, threshold in enumerate(thresholds):
            tprs[fold_idx, threshold_idx], fprs[fold_idx, threshold_idx], _ = calculate_accuracy(
                threshold, dist[test_set], actual_issame[test_set])
        _, _, accuracy[fold_idx] = calculate_accuracy(
            thresholds[best_threshold_index], dist[test_set], actual_issame[test_set])
    tpr = np.mean(tprs, 0)
    fpr = np.mean(fprs, 0)
    return tpr, fpr, accuracy, best, dist


def calculate_val_far(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    true_accept = np.sum(np.logical_and(predict_issame, actual_issame))
    false_accept = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    n_same = np.sum(actual_issame)
    n_diff = np.sum(np.logical_not(actual_issame))
    val = float(true_accept) / float(n_same)
    far = float(false_accept) / float(n_diff)
    return val, far


def calculate_val(thresholds, embeddings1, embeddings2, actual_issame, far_target, nrof_folds=10):
    nrof_pairs = min(len(actual_issame), embeddings1.shape[0])
    nrof_thresholds = len(thresholds)
    k_fold = LFold(n_splits=nrof_folds, shuffle=False)
    val = np.zeros(nrof_folds)
    far = np.zeros(nrof_folds)
    chosen = np.zeros(nrof_folds)
    diff = np.subtract(embeddings1, embeddings2)
    dist = np.sum(np.square(diff), 1)
    indices = np.arange(nrof_pairs)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        far_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, far_train[threshold_idx] = calculate_val_far(
                threshold, dist[train_set], actual_issame[train_set])
        if np.max(far_train) >= far_target:
            threshold = old_slinear(far_train, thresholds, far_target)
        else:
            threshold = 0.0
        chosen[fold_idx] = threshold
        val[fold_idx], far[fold_idx] = calculate_val_far(
            threshold, dist[test_set], actual_issame[test_set])
    return np.mean(val), np.std(val), np.mean(far), val, far, chosen


def xnorm(embeddings_list):
    total = 0.0
    count = 0
    for embed in embeddings_list:
        for i in range(embed.shape[0]):
            total += np.linalg.norm(embed[i])
            count += 1
    return total / count


def evaluate(embeddings, actual_issame, nrof_folds=10, far_target=1e-3):
    """Un-normalised 2P x D embeddings -> dict of the reference's numbers (float64 throughout)."""
    raw = np.asarray(embeddings, dtype=np.float64)
    normed = normalize(raw)
    embeddings1 = normed[0::2]
    embeddings2 = normed[1::2]
    issame = np.asarray(actual_issame)
    tpr, fpr, accuracy, best, dist = calculate_roc(
        np.arange(0, 4, 0.01), embeddings1, embeddings2, issame, nrof_folds=nrof_folds)
    val, val_std, far, vals, fars, chosen = calculate_val(
        np.arange(0, 4, 0.001), embeddings1, embeddings2, issame, far_target,
        nrof_folds=nrof_folds)
    return {
        "tpr": tpr, "fpr": fpr, "accuracies": accuracy, "best_thresholds": best,
        "accuracy_mean": np.mean(accuracy), "accuracy_std": np.std(accuracy),
        "val_mean": val, "val_std": val_std, "far_mean": far, "vals": vals, "fars": fars,
        "val_thresholds": chosen, "xnorm": xnorm([raw]), "distances": dist,
    }
