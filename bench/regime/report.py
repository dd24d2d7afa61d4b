"""Tables and figures of the regime study, rebuilt from the harness's cells at any time.

Under ``RESULTS/regime/``:

- ``regime.csv``: one row per cell (identities, steps, loss label, backend, seed): 10-fold
  verification accuracy, its fold sd, final train loss, wall time, the cell's commit;
- ``versus_softmax.csv``: per (identities, steps, loss label, backend): the loss's and softmax's
  mean accuracy over seeds and the paired difference (loss - softmax, paired by seed: same
  initial backbone, same batches) with its 95 % Student-t interval (``bench.report.gap``);
- ``overtake.csv``: per (loss label, backend, identities): the smallest budget at which the
  loss is above softmax with an interval that excludes zero (empty when none in the grid), the
  difference there, and the largest difference seen anywhere on the budget axis;
- ``results.md``: the above as Markdown, with the grid, config, commits, CPU and command;
- ``ids<N>.png``: accuracy against steps for N identities, one line per loss, PyTorch solid and
  Gluon dashed, error bars the 95 % interval over seeds; the paper scale and ``scale=auto``
  side by side (softmax and SphereFace, which have no scale, drawn in both panels);
- ``versus_softmax.png``: the paired difference to softmax over the whole grid, one panel per
  backend and scale rule (rows: losses; columns: identities x steps), cells whose interval
  excludes zero marked.

A cell is counted only if its recorded config is the one this grid would train now (a cell of
another recipe in the same folder is ignored), so a changed recipe never mixes into a table.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from bench.regime import grid
from bench.report import gap
from bench.report.tables import markdown_lines, write_csv_tables
from common.backends import BACKENDS
from common.fileio import atomic_write_bytes

CELL_COLUMNS = ["identities", "steps", "loss", "backend", "seed", "acc", "acc_fold_std",
                "final_train_loss", "wall_s", "git_commit", "config_hash"]
VERSUS_COLUMNS = ["identities", "steps", "loss", "backend", "seeds", "loss_mean", "softmax_mean",
                  "diff_mean", "diff_ci95_lo", "diff_ci95_hi", "ci_excludes_zero", "ttest_p"]
OVERTAKE_COLUMNS = ["loss", "backend", "identities", "overtakes_at_steps", "diff_there",
                    "ci95_lo_there", "ci95_hi_there", "best_diff", "best_at_steps",
                    "below_at_steps"]


def collect(configs: dict) -> list[dict]:
    """Rows of every finished cell whose config is its point's (``configs``: Point -> cfg)."""
    from bench.run.config import hashed

    rows = []
    for point, cfg in configs.items():
        want = hashed(cfg)
        folder = Path(cfg.results) / Path(cfg.data).name / "cells"
        for path in sorted(folder.glob("*.json")):
            cell = json.loads(path.read_text())
            if cell.get("status") != "ok" or cell.get("config") != want:
                continue
            target = sorted(cell["final_eval"])[0]
            ev = cell["final_eval"][target]
            rows.append({"identities": point.identities, "steps": point.steps,
                         "seed": point.seed, "loss": cell["loss"], "backend": cell["backend"],
                         "acc": ev["acc_mean"], "acc_fold_std": ev["acc_std"],
                         "final_train_loss": cell["history"]["epochs"][-1]["train_loss"],
                         "wall_s": cell["history"]["timing"]["wall_seconds"],
                         "git_commit": cell.get("git_commit", ""),
                         "config_hash": cell["config_hash"]})
    return sorted(rows, key=lambda r: (r["identities"], r["steps"], r["loss"], r["backend"],
                                       r["seed"]))


def versus_rows(rows: list[dict], reference: str = grid.REFERENCE) -> list[dict]:
    """The paired difference of every loss to ``reference`` at every grid point and backend."""
    groups: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        groups[(r["identities"], r["steps"], r["backend"])][r["loss"]][r["seed"]] = r["acc"]
    out = []
    for (n, steps, backend), acc in sorted(groups.items()):
        for loss, g in gap.versus_reference(acc, reference).items():
            out.append({"identities": n, "steps": steps, "loss": loss, "backend": backend,
                        "seeds": len(g.seeds),
                        "loss_mean": sum(acc[loss][s] for s in g.seeds) / len(g.seeds),
                        "softmax_mean": sum(acc[reference][s] for s in g.seeds) / len(g.seeds),
                        "diff_mean": g.interval.mean, "diff_ci95_lo": g.interval.lo,
                        "diff_ci95_hi": g.interval.hi,
                        "ci_excludes_zero": g.interval.excludes_zero, "ttest_p": g.p_value})
    return sorted(out, key=lambda v: (v["identities"], v["steps"], v["loss"], v["backend"]))


def overtake_rows(versus: list[dict]) -> list[dict]:
    """Per (loss, backend, identities): where along the budget axis the loss overtakes softmax
    (interval above zero), its best difference, and the budgets where it is significantly
    below."""
    groups: dict = defaultdict(list)
    for v in versus:
        groups[(v["loss"], v["backend"], v["identities"])].append(v)
    out = []
    for (loss, backend, n), vs in sorted(groups.items()):
        vs = sorted(vs, key=lambda v: v["steps"])
        above = [v for v in vs if v["ci_excludes_zero"] and v["diff_mean"] > 0]
        below = [v["steps"] for v in vs if v["ci_excludes_zero"] and v["diff_mean"] < 0]
        best = max(vs, key=lambda v: v["diff_mean"])
        first = above[0] if above else None
        out.append({"loss": loss, "backend": backend, "identities": n,
                    "overtakes_at_steps": first["steps"] if first else None,
                    "diff_there": first["diff_mean"] if first else None,
                    "ci95_lo_there": first["diff_ci95_lo"] if first else None,
                    "ci95_hi_there": first["diff_ci95_hi"] if first else None,
                    "best_diff": best["diff_mean"], "best_at_steps": best["steps"],
                    "below_at_steps": " ".join(str(s) for s in below)})
    return out


def _pt(v) -> str:
    """A fraction as signed points (percent), one decimal."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:+.1f}"


def _ci(lo, hi) -> str:
    if lo is None or math.isnan(lo):
        return "n/a"
    return f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"


def to_markdown(meta: dict, rows: list[dict], versus: list[dict], over: list[dict],
                expected: int) -> str:
    lines = ["# Regime study: where does a margin loss pay off over softmax?", "",
             f"Cells finished: {len(rows)} of {expected} (loss labels x backends x grid points). "
             f"Grid: identities {meta['grid']['identities']}, steps {meta['grid']['steps']} "
             f"(batch {grid.BATCH}), seeds {meta['grid']['seeds']}, scale rules "
             f"{meta['grid']['rules']}.", "",
             "Data: the suite's synthetic faces (`common.synthetic`), "
             f"{grid.IMAGES_PER_IDENTITY} images per training identity, rendered at "
             f"{grid.GENERATED_SIZE} px and trained at {grid.IMAGE_SIZE} px; verification on "
             f"{grid.PAIRS} pairs of {grid.HELDOUT} held-out identities (10-fold protocol, "
             "accuracy in %).", "",
             f"Recipe: `{json.dumps(meta['recipe'], sort_keys=True)}`; each budget is its own "
             f"run (cosine schedule over the budget, warm-up {grid.WARMUP_FRACTION:.0%} of it). "
             "`scale=auto` is AdaCos' fixed scale sqrt(2) ln(C - 1) for C training identities.",
             "", f"Cells trained at {', '.join(meta['cell_commits']) or 'n/a'}; tables written "
             f"at `{meta['environment']['git_commit']}` on {meta['environment']['cpu']}.", "",
             f"Command: `{meta['command']}`", "",
             "## Where each loss overtakes softmax", "",
             "Smallest budget (steps) at which the loss is above softmax with a paired 95 % "
             "interval over seeds that excludes zero; `-` when no budget of the grid does. "
             "Differences in points (loss - softmax, paired by seed).", ""]
    table = []
    for o in over:
        there = ("-" if o["overtakes_at_steps"] is None else
                 f"{o['overtakes_at_steps']}: {_pt(o['diff_there'])} "
                 f"{_ci(o['ci95_lo_there'], o['ci95_hi_there'])}")
        table.append([o["loss"], o["backend"], o["identities"], there,
                      f"{_pt(o['best_diff'])} at {o['best_at_steps']}",
                      o["below_at_steps"] or "-"])
    lines += markdown_lines(["loss", "backend", "identities", "overtakes at (steps: diff, CI)",
                             "best diff", "significantly below at"], table, "llrlll")
    lines += ["", "## Paired difference to softmax at every grid point", ""]
    table = [[v["identities"], v["steps"], v["loss"], v["backend"], v["seeds"],
              f"{100 * v['loss_mean']:.1f}", f"{100 * v['softmax_mean']:.1f}",
              _pt(v["diff_mean"]), _ci(v["diff_ci95_lo"], v["diff_ci95_hi"]),
              "yes" if v["ci_excludes_zero"] else ""] for v in versus]
    lines += markdown_lines(["identities", "steps", "loss", "backend", "seeds", "acc %",
                             "softmax %", "diff (pt)", "95 % CI (pt)", "excludes 0"], table,
                            "rrllrrrrll")
    lines += ["", "Figures: " + ", ".join(f"[ids{n}.png](ids{n}.png)"
                                          for n in meta["grid"]["identities"])
              + ", [versus_softmax.png](versus_softmax.png). Every cell: "
              "[regime.csv](regime.csv).", ""]
    return "\n".join(lines)


def write_report(results: Path, configs: dict, meta: dict, grid_labels: list[str],
                 backends=BACKENDS, plots: bool = True) -> Path:
    """Rebuild every table (and the figures) of the study under ``results/regime``; returns
    the path of results.md."""
    out = Path(results)
    out.mkdir(parents=True, exist_ok=True)
    rows = collect(configs)
    versus = versus_rows(rows)
    over = overtake_rows(versus)
    meta = {**meta, "cell_commits": sorted({r["git_commit"][:12] for r in rows
                                            if r["git_commit"]})}
    write_csv_tables(out, (("regime.csv", rows, CELL_COLUMNS),
                           ("versus_softmax.csv", versus, VERSUS_COLUMNS),
                           ("overtake.csv", over, OVERTAKE_COLUMNS)), meta)
    expected = len(configs) * len(grid_labels) * len(backends)
    md = out / "results.md"
    atomic_write_bytes(md, to_markdown(meta, rows, versus, over, expected).encode())
    if plots and rows:
        from bench.regime import figures

        figures.accuracy_vs_steps(rows, out, meta["grid"]["identities"])
        figures.versus_map(versus, out / "versus_softmax.png")
    return md
