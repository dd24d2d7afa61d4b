"""Tables and figures of a real-data comparison over seeds, built from the harness's cells.

The harness keeps one seed per results folder (its cell key is (loss, backend)), so seed s of
data set D lives in ``results/D/seed<s>/D/cells/``. This module reads the cells of every seed
that match the current config (the harness's family hash) and writes, under ``results/D/``:

- ``results.csv``: one row per (loss, backend, seed): 10-fold accuracy (mean, +- fold std),
  VAL@FAR=1e-3, EER, AUC, final train loss, wall time, status;
- ``gap.csv``: one row per loss: torch and gluon mean +- sd over seeds, the paired torch - gluon
  difference with its 95 % t-interval, whether it excludes zero, the paired t-test p, and
  McNemar's exact test on the per-pair decisions (pooled over seeds, and per seed in
  ``mcnemar.csv``);
- ``ranking.csv``: per backend, losses ranked with ties where the 95 % intervals overlap;
- ``versus_reference.csv``: per backend, each loss minus softmax, paired by seed (same initial
  backbone and batches), with the 95 % t-interval and the count of seeds where it is above;
- ``results.md``: all of the above as Markdown with config, seeds, commit, packages, CPU, command;
- ``curves.png``: training loss per step and accuracy per epoch, both backends overlaid per loss
  (every seed drawn), via ``bench.report.plots.training_curves``;
- ``gap.png``: the ranking (each backend's accuracy and 95 % interval per loss) beside the
  backend gap per loss with its interval, via ``bench.report.plots.ranking_and_gap``.

Statistics: ``bench.report.gap``. Every file is written atomically; the report can be rebuilt at any
time from the cells (``python -m bench real --report-only``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.report import gap
from bench.report import results as res
from bench.report.tables import markdown_lines, write_csv_tables
from common.backends import BACKENDS
from common.fileio import atomic_write_bytes

RESULT_COLUMNS = ["dataset", "target", "loss", "backend", "seed", "status", "acc_mean", "acc_std",
                  "val", "eer", "auc", "final_train_loss", "wall_s", "epochs", "config_hash"]
GAP_COLUMNS = ["dataset", "target", "loss", "seeds", "torch_mean", "torch_sd", "gluon_mean",
               "gluon_sd", "diff_mean", "diff_sd", "diff_ci95_lo", "diff_ci95_hi",
               "ci_excludes_zero", "ttest_p", "mcnemar_torch_only", "mcnemar_gluon_only",
               "mcnemar_pooled_p", "mcnemar_seeds_p_lt_0.05"]
MCNEMAR_COLUMNS = ["dataset", "target", "loss", "seed", "torch_only", "gluon_only", "both_right",
                   "both_wrong", "p"]
VERSUS_COLUMNS = ["dataset", "target", "backend", "loss", "reference", "seeds", "loss_mean",
                  "reference_mean", "diff_mean", "diff_sd", "diff_ci95_lo", "diff_ci95_hi",
                  "ci_excludes_zero", "ttest_p", "seeds_above"]
REFERENCE = "softmax"  # the loss every other is read against (``versus_reference.csv``)
RANK_COLUMNS = ["dataset", "target", "backend", "rank", "loss", "seeds", "mean", "sd",
                "ci95_lo", "ci95_hi", "tied_with"]


def seed_dir(results: Path, dataset: str, seed: int) -> Path:
    """The harness's results root for one seed (it appends the data folder name itself)."""
    return Path(results) / dataset / f"seed{seed}"


def cells_dir(results: Path, dataset: str, seed: int) -> Path:
    return seed_dir(results, dataset, seed) / dataset


def seeds_on_disk(results: Path, dataset: str) -> list[int]:
    """Seeds that have a cells folder under ``results/<dataset>/``, e.g. from earlier runs."""
    found = []
    for d in (Path(results) / dataset).glob("seed*"):
        if d.name[4:].isdigit() and (d / dataset / "cells").is_dir():
            found.append(int(d.name[4:]))
    return sorted(found)


def load_seed_cells(results: Path, dataset: str, family_hashes: dict) -> dict:
    """``{seed: [cell]}`` for the cells matching each seed's family hash."""
    return {seed: res.load_cells(cells_dir(results, dataset, seed), fh)
            for seed, fh in sorted(family_hashes.items())}


def result_rows(dataset: str, cells_by_seed: dict) -> list[dict]:
    rows = []
    for seed, cells in cells_by_seed.items():
        for r in res.rows_from_cells(cells):
            rows.append({"dataset": dataset, "seed": seed, **{k: r.get(k, math.nan) for k in (
                "target", "loss", "backend", "status", "acc_mean", "acc_std", "val", "eer",
                "auc", "final_train_loss", "wall_s", "epochs", "config_hash")}})
    rows.sort(key=lambda r: (r["target"], r["loss"], r["backend"], r["seed"]))
    return rows


def _ok(rows):
    return [r for r in rows if r["status"] == "ok" and not math.isnan(r["acc_mean"])]


def _decisions(results: Path, dataset: str, seed: int, loss: str, backend: str, target: str):
    path = res.result_path(cells_dir(results, dataset, seed), loss, backend, target)
    return gap.correct_pairs(res.load_result(path)) if path.exists() else None


def gap_rows(results: Path, dataset: str, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(one gap row per (target, loss), one McNemar row per (target, loss, seed))."""
    acc = {}
    for r in _ok(rows):
        acc.setdefault((r["target"], r["loss"]), {}).setdefault(r["backend"], {})[r["seed"]] = \
            r["acc_mean"]
    out, per_seed = [], []
    for (target, loss), by_backend in sorted(acc.items()):
        t, g = by_backend.get("pytorch", {}), by_backend.get("gluon", {})
        row = {"dataset": dataset, "target": target, "loss": loss}
        if not (set(t) & set(g)):
            continue  # no seed finished in both backends yet
        pg = gap.paired_gap(t, g)
        ti = gap.t_interval([t[s] for s in pg.seeds])
        gi = gap.t_interval([g[s] for s in pg.seeds])
        row.update(seeds=" ".join(map(str, pg.seeds)), torch_mean=ti.mean, torch_sd=ti.std,
                   gluon_mean=gi.mean, gluon_sd=gi.std, diff_mean=pg.interval.mean,
                   diff_sd=pg.interval.std, diff_ci95_lo=pg.interval.lo,
                   diff_ci95_hi=pg.interval.hi,
                   ci_excludes_zero=("n/a" if pg.interval.n < 2
                                     else str(pg.interval.excludes_zero).lower()),
                   ttest_p=pg.p_value)
        b = c = significant = tested = 0
        for seed in pg.seeds:
            dt = _decisions(results, dataset, seed, loss, "pytorch", target)
            dg = _decisions(results, dataset, seed, loss, "gluon", target)
            if dt is None or dg is None or dt.shape != dg.shape:
                continue
            m = gap.mcnemar_exact(dt, dg)
            per_seed.append({"dataset": dataset, "target": target, "loss": loss, "seed": seed,
                             "torch_only": m.only_first, "gluon_only": m.only_second,
                             "both_right": m.both_right, "both_wrong": m.both_wrong,
                             "p": m.p_value})
            b, c = b + m.only_first, c + m.only_second
            tested += 1
            significant += m.p_value < 0.05
        row.update(mcnemar_torch_only=b, mcnemar_gluon_only=c,
                   mcnemar_pooled_p=gap.binomial_two_sided_half(b, b + c) if tested else math.nan,
                   **{"mcnemar_seeds_p_lt_0.05": f"{significant}/{tested}"})
        out.append(row)
    return out, per_seed


def ranking_rows(dataset: str, rows: list[dict]) -> list[dict]:
    out = []
    for target in sorted({r["target"] for r in _ok(rows)}):
        for backend in BACKENDS:
            accs = {}
            for r in _ok(rows):
                if r["target"] == target and r["backend"] == backend:
                    accs.setdefault(r["loss"], []).append(r["acc_mean"])
            if not accs:
                continue
            ranked = gap.rank_with_ties({k: gap.t_interval(v) for k, v in accs.items()})
            for rk in ranked:
                iv = rk.interval
                out.append({"dataset": dataset, "target": target, "backend": backend,
                            "rank": rk.rank, "loss": rk.name, "seeds": iv.n, "mean": iv.mean,
                            "sd": iv.std, "ci95_lo": iv.lo, "ci95_hi": iv.hi,
                            "tied_with": " ".join(rk.tied_with)})
    return out


def versus_rows(dataset: str, rows: list[dict], reference: str = REFERENCE) -> list[dict]:
    """Per target and backend, each loss minus ``reference``, paired by seed (every loss of a
    seed starts from the same backbone weights and sees the same batches)."""
    acc: dict = {}
    for r in _ok(rows):
        acc.setdefault((r["target"], r["backend"]), {}).setdefault(r["loss"], {})[r["seed"]] = \
            r["acc_mean"]
    out = []
    for (target, backend), by_loss in sorted(acc.items()):
        for loss, g in gap.versus_reference(by_loss, reference).items():
            mine, ref = by_loss[loss], by_loss[reference]
            out.append({"dataset": dataset, "target": target, "backend": backend,
                        "loss": loss, "reference": reference,
                        "seeds": " ".join(map(str, g.seeds)),
                        "loss_mean": sum(mine[s] for s in g.seeds) / len(g.seeds),
                        "reference_mean": sum(ref[s] for s in g.seeds) / len(g.seeds),
                        "diff_mean": g.interval.mean, "diff_sd": g.interval.std,
                        "diff_ci95_lo": g.interval.lo, "diff_ci95_hi": g.interval.hi,
                        "ci_excludes_zero": ("n/a" if g.interval.n < 2
                                             else str(g.interval.excludes_zero).lower()),
                        "ttest_p": g.p_value,
                        "seeds_above": f"{sum(d > 0 for d in g.diffs)}/{len(g.diffs)}"})
    return out


def _cell(v, digits=4):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def md_table(rows: list[dict], columns: list[tuple[str, str]], digits: int = 4) -> list[str]:
    """Markdown lines of ``rows`` under ``columns`` ((key, header) pairs); wall_s to 0.1 s."""
    return markdown_lines([h for _, h in columns],
                          ([_cell(r.get(k, ""), 1 if k == "wall_s" else digits)
                            for k, _ in columns] for r in rows))


def _pct(v):
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


ONE_SEED = "n/a (1 seed)"  # no interval, hence no ranking, from a single seed


def _mean_sd(mean, sd) -> str:
    """``mean +- sd`` in %, the mean alone where one seed has no sd."""
    return _pct(mean) if sd is None or math.isnan(sd) else f"{_pct(mean)} +- {_pct(sd)}"


def _ci_text(lo, hi, n: int) -> str:
    return ONE_SEED if n < 2 else f"[{_pct(lo)}, {_pct(hi)}]"


def to_markdown(dataset: str, meta: dict, rows, gaps, mcn, ranks, expected: int,
                versus=()) -> str:
    cfg, env = meta["config"], meta["environment"]
    done = len(_ok(rows))
    ran = meta.get("seeds_run")
    seeds = f"Seeds {meta['seeds']}" + (
        f" (the command below ran seeds {ran}; the others' cells were already here)"
        if ran and sorted(ran) != sorted(meta["seeds"]) else "")
    lines = [f"# {dataset}: margin losses, PyTorch vs Gluon, over seeds", "",
             f"{seeds}; cells finished: {done} of {expected} "
             f"(losses x backends x seeds). Data: {json.dumps(meta.get('data', {}))}", "",
             "Config (seed aside): " + ", ".join(f"`{k}={cfg[k]}`" for k in sorted(cfg)
                                                 if k != "seed"), "",
             f"Tables written at commit `{env['git_commit']}`"
             + (f"; cells trained at {', '.join(f'`{c}`' for c in meta['cell_commits'])} "
                f"(each cell's own in its cells/*.json)" if meta.get("cell_commits") else "")
             + f". CPU {env['cpu']}, Python {env['python']}, "
             + ", ".join(f"{k} {v}" for k, v in sorted(env["packages"].items())), "",
             f"Command: `{meta['command']}`", "",
             "Accuracy: 10-fold verification accuracy on the held-out pairs, in %. "
             "Over seeds: mean +- sample sd. Gap: torch - gluon, paired by seed (same initial "
             "weights and batches), 95 % Student-t interval; with one seed there is no interval. "
             "McNemar: exact test on the two backends' per-pair decisions (b = pairs only torch "
             "gets right, c = only gluon), pooled over seeds (the same pairs recur in every "
             "seed, so read the pooled p as indicative) and the number of seeds with p < 0.05.",
             ""]
    for target in sorted({g["target"] for g in gaps} | {r["target"] for r in ranks}):
        lines += [f"## {target}: backend gap per loss", ""]
        trows = []
        for g in (g for g in gaps if g["target"] == target):
            trows.append({
                "loss": g["loss"], "n": len(g["seeds"].split()),
                "torch": _mean_sd(g["torch_mean"], g["torch_sd"]),
                "gluon": _mean_sd(g["gluon_mean"], g["gluon_sd"]),
                "gap": _pct(g["diff_mean"]),
                "ci": _ci_text(g["diff_ci95_lo"], g["diff_ci95_hi"], len(g["seeds"].split())),
                "ex": g["ci_excludes_zero"],
                "mc": f"{g['mcnemar_torch_only']} / {g['mcnemar_gluon_only']}",
                "p": ("n/a" if math.isnan(g["mcnemar_pooled_p"])
                      else _cell(g["mcnemar_pooled_p"], 3)),
                "sig": g["mcnemar_seeds_p_lt_0.05"]})
        lines += md_table(trows, [("loss", "loss"), ("n", "seeds"), ("torch", "torch acc %"),
                                  ("gluon", "gluon acc %"), ("gap", "gap (pt)"),
                                  ("ci", "95 % CI (pt)"), ("ex", "excludes 0"),
                                  ("mc", "McNemar b / c"), ("p", "pooled p"),
                                  ("sig", "seeds p<0.05")])
        for backend in BACKENDS:
            rr = [r for r in ranks if r["target"] == target and r["backend"] == backend]
            if not rr:
                continue
            lines += ["", f"## {target}: ranking ({backend}; shared rank = intervals overlap)",
                      ""]
            lines += md_table([{**r, "mean": _pct(r["mean"]),
                                "sd": _pct(r["sd"]) if r["seeds"] >= 2 else "",
                                "ci": _ci_text(r["ci95_lo"], r["ci95_hi"], r["seeds"]),
                                "rank": r["rank"] if r["seeds"] >= 2 else ONE_SEED,
                                "tied_with": r["tied_with"] if r["seeds"] >= 2 else ""}
                               for r in rr],
                              [("rank", "rank"), ("loss", "loss"), ("seeds", "seeds"),
                               ("mean", "acc %"), ("sd", "sd"), ("ci", "95 % CI"),
                               ("tied_with", "tied with")])
        vv = [v for v in versus if v["target"] == target]
        if vv:
            lines += ["", f"## {target}: each loss minus {vv[0]['reference']}, paired by seed",
                      "", "Same initial backbone and batches within a seed; 95 % Student-t "
                      "interval of the per-seed differences, in points.", ""]
            lines += md_table([{**v, "n": len(v["seeds"].split()),
                                "acc": _pct(v["loss_mean"]), "ref": _pct(v["reference_mean"]),
                                "diff": _pct(v["diff_mean"]),
                                "ci": _ci_text(v["diff_ci95_lo"], v["diff_ci95_hi"],
                                               len(v["seeds"].split()))}
                               for v in vv],
                              [("backend", "backend"), ("loss", "loss"), ("n", "seeds"),
                               ("acc", "acc %"), ("ref", f"{vv[0]['reference']} %"),
                               ("diff", "diff (pt)"), ("ci", "95 % CI (pt)"),
                               ("ci_excludes_zero", "excludes 0"),
                               ("seeds_above", "seeds above")])
        lines += ["", f"## {target}: every cell", ""]
        lines += md_table([r for r in rows if r["target"] == target],
                          [("loss", "loss"), ("backend", "backend"), ("seed", "seed"),
                           ("status", "status"), ("acc_mean", "acc"), ("acc_std", "fold sd"),
                           ("val", "VAL@1e-3"), ("eer", "EER"), ("final_train_loss",
                                                                 "train loss"),
                           ("wall_s", "wall s")])
        lines.append("")
    lines += ["![training curves, both backends overlaid](curves.png)", ""]
    return "\n".join(lines)


def write_report(results: Path, dataset: str, family_hashes: dict, meta: dict,
                 losses, plots: bool = True) -> Path:
    """Rebuild every table (and the curves) of ``results/<dataset>/``; returns results.md.

    ``family_hashes``: {seed: hash} of every seed to show; ``losses``: the loss names asked for.
    Cells of other losses that match the config are shown too, and "cells finished" counts
    against both (losses asked or found) x 2 backends x seeds.
    """
    out = Path(results) / dataset
    out.mkdir(parents=True, exist_ok=True)
    cells_by_seed = load_seed_cells(results, dataset, family_hashes)
    rows = result_rows(dataset, cells_by_seed)
    meta = {**meta, "cell_commits": sorted({str(c["git_commit"])[:12]
                                            for cells in cells_by_seed.values() for c in cells
                                            if c.get("git_commit")})}
    expected_cells = (len(set(losses) | {r["loss"] for r in rows}) * len(BACKENDS)
                      * len(family_hashes))
    gaps, mcn = gap_rows(results, dataset, rows)
    ranks = ranking_rows(dataset, rows)
    versus = versus_rows(dataset, rows)
    write_csv_tables(out, (("results.csv", rows, RESULT_COLUMNS),
                           ("versus_reference.csv", versus, VERSUS_COLUMNS),
                           ("gap.csv", gaps, GAP_COLUMNS),
                           ("mcnemar.csv", mcn, MCNEMAR_COLUMNS),
                           ("ranking.csv", ranks, RANK_COLUMNS)), meta)
    md = out / "results.md"
    atomic_write_bytes(md, to_markdown(dataset, meta, rows, gaps, mcn, ranks,
                                       expected_cells, versus).encode("utf-8"))
    if plots:
        from bench.report.plots import ranking_and_gap, training_curves

        training_curves([c for cells in cells_by_seed.values() for c in cells],
                        out / "curves.png")
        ranking_and_gap(ranks, gaps, out / "gap.png")
    return md


def summary_line(results: Path, dataset: str) -> str:
    """One line per loss from gap.csv, for the console."""
    path = Path(results) / dataset / "gap.csv"
    if not path.exists():
        return ""
    import pandas as pd

    df = pd.read_csv(path, comment="#")
    return "\n".join(
        f"{r.loss:18s} torch {100 * r.torch_mean:6.2f} gluon {100 * r.gluon_mean:6.2f} "
        f"gap {100 * r.diff_mean:+6.2f} CI [{100 * r.diff_ci95_lo:+.2f}, "
        f"{100 * r.diff_ci95_hi:+.2f}] McNemar p {r.mcnemar_pooled_p:.3f}"
        for r in df.itertuples()) if len(df) else ""

