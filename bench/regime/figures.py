"""Figures of the regime study (``bench.regime.report`` describes them)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.regime import grid
from bench.report import gap
from bench.report.plots import save_figure
from bench.run.loss_settings import split

BACKEND_LINE = {"pytorch": "-", "gluon": "--"}
RULE_TITLE = {"paper": "paper scale (class default s)", "auto": "scale=auto (AdaCos s)"}


def _rule(label: str) -> str:
    return "auto" if split(label)[1].get("scale") == "auto" else "paper"


def _panels(label: str) -> tuple[str, ...]:
    """The panels a loss is drawn in: losses without a scale in both (they are the reference
    every scaled loss is read against)."""
    from common import manifest

    name = split(label)[0]
    if "scale" not in manifest.auto_keys(name):
        return ("paper", "auto")
    return (_rule(label),)


def _order(name: str) -> tuple:
    """The grid's loss order (softmax first), other losses after it by name."""
    return (grid.LOSSES.index(name) if name in grid.LOSSES else len(grid.LOSSES), name)


def _colours(names) -> dict:
    return {n: f"C{i % 10}" for i, n in enumerate(sorted(names, key=_order))}


def accuracy_vs_steps(rows: list[dict], out: Path, identities) -> list[Path]:
    """``ids<N>.png`` per identity count: mean accuracy (95 % interval over seeds) vs steps."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[(r["identities"], r["loss"], r["backend"])][r["steps"]].append(r["acc"])
    colours = _colours({split(r["loss"])[0] for r in rows})
    paths = []
    for n in identities:
        keys = sorted(k for k in acc if k[0] == n)
        if not keys:
            continue
        fig = Figure(figsize=(12, 5), layout="constrained")
        axes = dict(zip(("paper", "auto"), fig.subplots(1, 2, sharey=True)))
        for _, label, backend in keys:
            steps = sorted(acc[(n, label, backend)])
            ivs = [gap.t_interval(acc[(n, label, backend)][s]) for s in steps]
            mean = np.array([iv.mean for iv in ivs]) * 100
            half = np.array([0.0 if math.isnan(iv.lo) else iv.mean - iv.lo for iv in ivs]) * 100
            # the two backends a little apart, so that both intervals stay visible
            x = np.array(steps, dtype=float) * (0.97 if backend == "pytorch" else 1.03)
            for panel in _panels(label):
                axes[panel].errorbar(x, mean, yerr=half, color=colours[split(label)[0]],
                                     ls=BACKEND_LINE.get(backend, ":"), marker="o", ms=3,
                                     capsize=2, lw=1.2,
                                     label=f"{split(label)[0]} ({backend})")
        all_steps = sorted({r["steps"] for r in rows})
        for rule, ax in axes.items():
            ax.set_xscale("log")
            ax.set_xticks(all_steps, [str(s) for s in all_steps])
            ax.minorticks_off()
            ax.set_title(f"{n} identities: {RULE_TITLE[rule]}")
            ax.set_xlabel(f"training steps (batch {grid.BATCH})")
            ax.grid(alpha=0.3)
        axes["paper"].set_ylabel("verification accuracy % (95 % interval over seeds)")
        axes["auto"].legend(fontsize=7, ncol=2, loc="lower right")
        paths.append(save_figure(fig, out / f"ids{n}.png"))
    return paths


def versus_map(versus: list[dict], path: Path) -> Path | None:
    """Paired difference to softmax, one heat map per backend (rows) and scale rule
    (columns); map rows: losses, map columns: (identities, steps); a dot marks an interval
    that excludes zero."""
    if not versus:
        return None
    columns = sorted({(v["identities"], v["steps"]) for v in versus})
    names = sorted({split(v["loss"])[0] for v in versus}, key=_order)
    fig = Figure(figsize=(2 * (2 + 0.5 * len(columns)), 2 + 2 * (1 + 0.3 * len(names))),
                 layout="constrained")
    axes = fig.subplots(2, 2, squeeze=False)
    lim = max(abs(v["diff_mean"]) for v in versus) * 100 or 1.0
    image = None
    for row, backend in enumerate(("pytorch", "gluon")):
        for col, rule in enumerate(("paper", "auto")):
            ax = axes[row, col]
            values = np.full((len(names), len(columns)), np.nan)
            for v in versus:
                if v["backend"] != backend or rule not in _panels(v["loss"]):
                    continue
                i = names.index(split(v["loss"])[0])
                j = columns.index((v["identities"], v["steps"]))
                values[i, j] = 100 * v["diff_mean"]
                if v["ci_excludes_zero"]:
                    ax.plot(j, i, marker="o", ms=4, color="black")
            image = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
            ax.set_yticks(range(len(names)), names, fontsize=8)
            ax.set_xticks(range(len(columns)), [f"{n}\n{s}" for n, s in columns], fontsize=7)
            ax.set_title(f"{backend}, {RULE_TITLE[rule]}", fontsize=9)
            ax.set_xlabel("identities / steps", fontsize=8)
    fig.suptitle("loss - softmax accuracy (points), paired by seed; dot: 95 % interval "
                 "excludes 0", fontsize=10)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="points")
    return save_figure(fig, path)
