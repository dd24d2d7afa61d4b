"""Figures of a harness run, drawn from the cell records in ``results/<dataset>/cells``.

- ``curves.png``: training loss per step, one panel per loss, both backends overlaid
  (PyTorch solid, Gluon dashed), verification accuracy per epoch on a second axis.
- ``accuracy_bars.png``: final verification accuracy (+- std over the 10 folds) per loss and
  backend, one panel per verification target.
- ``roc/<target>__<loss>.png``: ROC curves of both backends
  (``bench.report.verification_plots``).
- ``gap.png`` (real-data reports over seeds, ``bench.real.report``): per loss, each backend's
  accuracy with its 95 % interval over seeds (the ranking, ties visible as overlaps) beside the
  paired torch - gluon gap with its interval.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no display needed).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.report import results as res
from common.fileio import atomic_write_bytes

STYLE = {"pytorch": dict(color="tab:blue", ls="-"), "gluon": dict(color="tab:orange", ls="--")}


def save_figure(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return math.ceil(n / cols), cols


def _ok(cells: list[dict]) -> list[dict]:
    return [c for c in cells if c and c.get("status") == "ok" and c.get("history")]


def training_curves(cells: list[dict], path: Path) -> Path | None:
    """Train loss per step of both backends overlaid, one panel per loss."""
    cells = _ok(cells)
    losses = sorted({c["loss"] for c in cells})
    if not losses:
        return None
    rows, cols = _grid(len(losses))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    for i, loss in enumerate(losses):
        ax = fig.add_subplot(rows, cols, i + 1)
        acc_ax = ax.twinx()
        for cell in (c for c in cells if c["loss"] == loss):
            style = STYLE.get(cell["backend"], {})
            steps = np.asarray(cell["history"]["steps"]["loss"], dtype=float)
            ax.plot(np.arange(1, len(steps) + 1), steps, lw=1, label=cell["backend"], **style)
            epochs = cell["history"]["epochs"]
            per_epoch = len(steps) / max(len(epochs), 1)
            target = sorted(epochs[-1].get("eval", {}) or [None])[0] if epochs else None
            if target is not None:
                acc = [e["eval"][target]["acc_mean"] for e in epochs]
                x = per_epoch * np.arange(1, len(acc) + 1)
                acc_ax.plot(x, acc, marker="o", ms=3, lw=0.8, alpha=0.7, **style)
        ax.set_title(loss, fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel("train loss")
        acc_ax.set_ylabel("verification acc (o)")
        acc_ax.set_ylim(0.45, 1.0)
        if i == 0:
            ax.legend(fontsize="small")
    fig.suptitle("Training loss (lines) and verification accuracy per epoch (markers): "
                 "PyTorch solid, Gluon dashed")
    return save_figure(fig, path)


def accuracy_bars(cells: list[dict], path: Path) -> Path | None:
    """Final verification accuracy per loss and backend, one panel per target."""
    rows = [r for r in res.rows_from_cells(_ok(cells)) if not math.isnan(r["acc_mean"])]
    targets = sorted({r["target"] for r in rows})
    if not targets:
        return None
    losses = sorted({r["loss"] for r in rows})
    backends = [b for b in STYLE if any(r["backend"] == b for r in rows)]
    fig = Figure(figsize=(max(6.0, 0.55 * len(losses) * len(backends)), 3.6 * len(targets)),
                 layout="constrained")
    width = 0.8 / max(len(backends), 1)
    for t, target in enumerate(targets):
        ax = fig.add_subplot(len(targets), 1, t + 1)
        for j, backend in enumerate(backends):
            got = {r["loss"]: r for r in rows if r["target"] == target and r["backend"] == backend}
            x = np.arange(len(losses)) + (j - (len(backends) - 1) / 2) * width
            y = [got[lo]["acc_mean"] if lo in got else np.nan for lo in losses]
            err = [got[lo]["acc_std"] if lo in got else 0 for lo in losses]
            ax.bar(x, y, width, yerr=err, capsize=2, label=backend,
                   color=STYLE[backend]["color"])
        ax.set_xticks(np.arange(len(losses)), losses, rotation=35, ha="right")
        finite = [r["acc_mean"] for r in rows if r["target"] == target]
        ax.set_ylim(max(0.0, min(finite) - 0.05), 1.0)
        ax.set_ylabel("verification accuracy")
        ax.set_title(target)
        ax.legend(fontsize="small")
    return save_figure(fig, path)


def roc_curves(out_dir: Path, cells: list[dict]) -> list[Path]:
    """One ROC figure per (target, loss) with both backends, via ``verification_plots``."""
    from bench.report.verification_plots import plot_roc

    written = []
    for loss in sorted({c["loss"] for c in _ok(cells)}):
        for target in sorted({t for c in _ok(cells) for t in c.get("final_eval", {})}):
            runs = []
            for cell in _ok(cells):
                p = res.result_path(out_dir, loss, cell["backend"], target)
                if cell["loss"] == loss and p.exists():
                    runs.append((cell["backend"], res.load_result(p)))
            if runs:
                fig = plot_roc(runs, title=f"{target}: {loss}")
                name = f"{target}__{res.loss_stem(loss)}.png"
                written.append(save_figure(fig, Path(out_dir) / "roc" / name))
    return written


def make_all(out_dir: Path, cells: list[dict]) -> list[Path]:
    out_dir = Path(out_dir)
    written = [training_curves(cells, out_dir / "curves.png"),
               accuracy_bars(cells, out_dir / "accuracy_bars.png")]
    written += roc_curves(out_dir, cells)
    return [p for p in written if p is not None]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not math.isnan(v)


def ranking_and_gap(ranks: list[dict], gaps: list[dict], path: Path) -> Path | None:
    """Left: accuracy mean and 95 % interval over seeds per loss and backend, best at the top;
    right: the paired torch - gluon gap and its interval (red where it excludes zero)."""
    targets = sorted({r["target"] for r in ranks})
    if not targets:
        return None
    n = max(len({r["loss"] for r in ranks if r["target"] == t}) for t in targets)
    fig = Figure(figsize=(11.0, (0.24 * n + 1.4) * len(targets)), layout="constrained")
    for t, target in enumerate(targets):
        acc_ax = fig.add_subplot(len(targets), 2, 2 * t + 1)
        gap_ax = fig.add_subplot(len(targets), 2, 2 * t + 2, sharey=acc_ax)
        by = {(r["loss"], r["backend"]): r for r in ranks if r["target"] == target}
        losses = sorted({lo for lo, _ in by}, key=lambda lo: np.nanmean(
            [by[lo, b]["mean"] for b in STYLE if (lo, b) in by]))
        y = np.arange(len(losses))
        for j, backend in enumerate(STYLE):
            got = [by.get((lo, backend)) for lo in losses]
            yy = y + (0.15 if j == 0 else -0.15)
            mean = np.array([100 * g["mean"] if g else np.nan for g in got])
            lo_ = np.array([100 * g["ci95_lo"] if g and _finite(g["ci95_lo"]) else np.nan
                            for g in got])
            hi_ = np.array([100 * g["ci95_hi"] if g and _finite(g["ci95_hi"]) else np.nan
                            for g in got])
            err = np.vstack([np.nan_to_num(mean - lo_), np.nan_to_num(hi_ - mean)])
            acc_ax.errorbar(mean, yy, xerr=err, fmt="o", ms=3, lw=1, capsize=2,
                            color=STYLE[backend]["color"], label=backend)
        ranks_of = {lo: "/".join(str(by[lo, b]["rank"]) if (lo, b) in by else "-"
                                 for b in STYLE) for lo in losses}
        acc_ax.set_yticks(y, [f"{lo} ({ranks_of[lo]})" for lo in losses], fontsize="small")
        acc_ax.set_xlabel("verification accuracy, % (mean, 95 % interval over seeds)")
        acc_ax.set_title(f"{target}: ranking (rank PyTorch/Gluon; overlapping = tied)",
                         fontsize="medium")
        acc_ax.legend(fontsize="small", loc="lower right")
        acc_ax.grid(axis="x", alpha=0.3)
        g_by = {g["loss"]: g for g in gaps if g["target"] == target}
        for i, lo in enumerate(losses):
            g = g_by.get(lo)
            if g is None:
                continue
            mean = 100 * g["diff_mean"]
            color = "tab:red" if str(g["ci_excludes_zero"]).lower() == "true" else "0.3"
            if _finite(g["diff_ci95_lo"]):
                gap_ax.plot([100 * g["diff_ci95_lo"], 100 * g["diff_ci95_hi"]], [i, i],
                            color=color, lw=1.2)
            gap_ax.plot([mean], [i], "o", ms=3, color=color)
        gap_ax.axvline(0.0, color="k", lw=0.8)
        gap_ax.tick_params(axis="y", labelleft=False)
        gap_ax.set_xlabel("torch - gluon, points (paired by seed, 95 % interval)")
        gap_ax.set_title("backend gap (red: interval excludes 0)", fontsize="medium")
        gap_ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)
