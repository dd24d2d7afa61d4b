"""Plots of verification results (``common.verification.VerificationResult``).

* ``plot_roc``: the mean ROC (fold-averaged TPR against FPR on the 0.01 threshold grid) of
  several runs on one figure, FPR on a log axis by default since face verification is read at
  low FAR; the legend carries each run's accuracy, AUC and EER.
* ``plot_roc_by_target``: the same for runs keyed by (target, backend), e.g. ``bench eval
  --targets``: one colour per target, one line style per backend.
* ``plot_distance_distribution``: histograms of the squared L2 distances of same and different
  pairs, with the operating threshold (mean of the folds' best thresholds) and the range of
  the per-fold thresholds.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display needed) and
returned after saving, so a caller can inspect or re-save them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from common.verification import VerificationResult


def _runs(runs) -> list[tuple[str, VerificationResult]]:
    items = list(runs.items()) if isinstance(runs, Mapping) else list(runs)
    if not items:
        raise ValueError("runs: expected at least one (label, VerificationResult), got none")
    for label, result in items:
        if not isinstance(result, VerificationResult):
            raise ValueError(
                f"runs: entry {label!r} is a {type(result).__name__}, not a VerificationResult"
            )
    return items


def plot_roc(runs: Mapping[str, VerificationResult] | Iterable[tuple[str, VerificationResult]],
             path: str | Path | None = None, log_fpr: bool = True,
             title: str = "ROC (mean over folds)") -> Figure:
    """ROC curves of several runs on one axes; saved to ``path`` when given."""
    items = _runs(runs)
    return _roc_figure(items, [{}] * len(items), path, log_fpr, title, (6, 5), "small")


LINE_STYLES = ("-", "--", ":", "-.")


def plot_roc_by_target(runs: Mapping[tuple[str, str], VerificationResult],
                       path: str | Path | None = None, log_fpr: bool = True,
                       title: str = "ROC (mean over folds)") -> Figure:
    """``plot_roc`` of runs keyed by (target, backend): a colour per target, a style per backend.

    One curve per key, labelled ``target/backend``, in the mapping's order.
    """
    items = _runs({f"{t}/{b}": r for (t, b), r in runs.items()})
    keys = list(runs)
    targets = list(dict.fromkeys(t for t, _ in keys))
    backends = list(dict.fromkeys(b for _, b in keys))
    styles = [{"color": f"C{targets.index(t) % 10}",
               "linestyle": LINE_STYLES[backends.index(b) % len(LINE_STYLES)]} for t, b in keys]
    return _roc_figure(items, styles, path, log_fpr, title, (7, 5.5), "x-small")


def _roc_figure(items, styles, path, log_fpr: bool, title: str, figsize, fontsize) -> Figure:
    """The one ROC axes both plots draw: a curve per (label, result) with its line style."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for (label, r), style in zip(items, styles):
        # on a log axis FPR = 0 cannot be drawn; those points carry no information there
        keep = r.fpr > 0 if log_fpr else np.ones_like(r.fpr, dtype=bool)
        ax.plot(r.fpr[keep], r.tpr[keep], **style,
                label=f"{label}: acc {r.accuracy_mean:.4f}, AUC {r.auc:.4f}, EER {r.eer:.4f}")
    if log_fpr:
        ax.set_xscale("log")
    ax.set_xlabel("false positive rate (FAR)")
    ax.set_ylabel("true positive rate (TAR)")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=fontsize)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_distance_distribution(result: VerificationResult, path: str | Path | None = None,
                               title: str = "pair distances", bins: int = 80) -> Figure:
    """Histograms of same / different pair distances with the chosen threshold."""
    if not isinstance(result, VerificationResult):
        raise ValueError(f"result: expected a VerificationResult, got {type(result).__name__}")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    edges = np.linspace(0.0, 4.0, bins + 1)
    same = result.distances[result.issame]
    diff = result.distances[~result.issame]
    ax.hist(diff, bins=edges, alpha=0.6, label=f"different ({diff.size})", color="tab:red")
    ax.hist(same, bins=edges, alpha=0.6, label=f"same ({same.size})", color="tab:blue")
    lo, hi = float(np.min(result.best_thresholds)), float(np.max(result.best_thresholds))
    if hi > lo:
        ax.axvspan(lo, hi, color="0.5", alpha=0.2, label="per-fold thresholds")
    ax.axvline(result.threshold, color="k", linestyle="--",
               label=f"threshold {result.threshold:.3f} (acc {result.accuracy_mean:.4f})")
    ax.set_xlim(0, 4)
    ax.set_xlabel("squared L2 distance of normalised embeddings (same if below threshold)")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend(fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
