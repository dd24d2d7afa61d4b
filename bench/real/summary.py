"""One README table over the real-data comparisons: a row per data set, from the tables
``bench real`` wrote under ``results/<set>/`` (results.csv, gap.csv, ranking.csv).

Per set: cells finished, the best loss per backend (mean +- sd over seeds, in %) with how many
losses share its rank, the gaps whose 95 % interval excludes zero, and how many losses have a
pooled McNemar p < 0.05. Filled into README.md's ``<!-- results:real -->`` block by
``python -m bench readme --real results/att_faces results/cropped_yale_b results/lfw_view1``.
"""

from __future__ import annotations

from pathlib import Path

from bench.report.tables import markdown_table, read_metadata
from common.backends import BACKENDS

LABELS = {"pytorch": "PyTorch", "gluon": "Gluon"}  # column names of the README table


def _read(folder: Path, name: str):
    import pandas as pd

    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `python -m bench real --dataset "
                                f"{folder.name} --report-only` to rebuild it")
    return pd.read_csv(path, comment="#")


def _seeds(folder: Path) -> list[int]:
    seeds = read_metadata(folder / "gap.csv").get("seeds")
    if not isinstance(seeds, list):
        raise ValueError(f"{folder / 'gap.csv'}: no '# seeds:' line")
    return seeds


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def row(folder: Path) -> dict[str, str]:
    """The README row of one data set's folder."""
    results, gaps, ranks = (_read(folder, n) for n in ("results.csv", "gap.csv", "ranking.csv"))
    seeds = _seeds(folder)
    losses = sorted(set(results.loss))
    done = int((results.status == "ok").sum())
    out = {"set": f"[{folder.name}]({folder.as_posix()}/results.md)",
           "cells": f"{done} of {len(losses) * len(BACKENDS) * len(seeds)}",
           "seeds": " ".join(map(str, seeds))}
    for backend in BACKENDS:
        label = LABELS[backend]
        r = ranks[ranks.backend == backend].sort_values("mean", ascending=False)
        if r.empty:
            out[label] = "-"
            continue
        best = r.iloc[0]
        tied = int((r["rank"] == 1).sum())
        out[label] = (f"{best.loss} {_pct(best['mean'])} +- {_pct(best.sd)} "
                      f"({tied} of {len(r)} share rank 1)")
    excl = gaps[gaps.ci_excludes_zero.astype(str).str.lower() == "true"]
    listed = "; ".join(f"{g.loss} {100 * g.diff_mean:+.2f} [{100 * g.diff_ci95_lo:+.2f}, "
                       f"{100 * g.diff_ci95_hi:+.2f}]" for g in excl.itertuples())
    out["excl"] = f"{len(excl)} of {len(gaps)}" + (f": {listed}" if listed else "")
    out["mcnemar"] = f"{int((gaps.mcnemar_pooled_p < 0.05).sum())} of {len(gaps)}"
    return out


def table(folders) -> str:
    rows = [row(Path(f)) for f in folders]
    return markdown_table(
        ["data set", "cells (seeds)", "best, PyTorch (acc %, mean +- sd)", "best, Gluon",
         "torch - gluon gaps whose 95 % CI excludes 0 (points)", "McNemar pooled p < 0.05"],
        ([r["set"], f"{r['cells']} ({r['seeds']})", r["PyTorch"], r["Gluon"], r["excl"],
          r["mcnemar"]] for r in rows))
