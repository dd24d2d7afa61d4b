"""The report of a tuning run, rebuilt at any time from the studies and the final cells.

Under ``results/tuning/<set>/`` (every file written atomically; the CSVs carry the metadata
in ``# key: JSON`` lines, ``bench.report.tables``):

- ``trials.csv``: every trial of every study: state (complete, failed, interrupted, running,
  waiting), validation accuracy, wall time, its point, the commit that ran it;
- ``tuning.csv``: per loss, the budget and the trials that count toward it, the best trial, its
  validation accuracy and point (and the rounded point retrained), the tuning wall time;
- ``results.csv``: one row per final cell (target, loss, default/tuned, backend, seed);
- ``summary.csv``: per target, loss and backend, the paper default's and the tuned
  configuration's accuracy over seeds with 95 % t-intervals, and the paired tuned - default
  difference (paired by seed: the same initial backbone weights and batches);
- ``gap.csv``: per target, loss and variant, the paired torch - gluon gap; for the tuned
  configuration it says whether a configuration tuned in one backend transfers to the other;
- ``ranking.csv``: per target, backend and variant, losses ranked with ties (a shared rank when
  95 % intervals overlap; ``bench.report.gap.rank_with_ties``);
- ``results.md`` (all of the above with the protocol) and ``tuning.png`` (per loss, default and
  tuned accuracy in both backends with their intervals).

Statistics: ``bench.report.gap`` (``t_interval``, ``paired_gap``, ``rank_with_ties``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bench.report import gap
from bench.report import results as res
from bench.report.tables import markdown_lines, write_csv_tables
from bench.tune.final import VARIANTS, Entry, Final
from bench.tune.study import counts, interrupted
from common.backends import BACKENDS
from common.fileio import atomic_write_bytes

TRIAL_COLUMNS = ["study", "number", "state", "value", "val_acc_std", "status", "wall_s",
                 "redo_of", "label", "params", "commit", "message"]
TUNING_COLUMNS = ["study", "loss", "budget", "complete", "failed", "interrupted", "best_trial",
                  "best_val_acc", "best_params", "final_params", "tuning_wall_s"]
RESULT_COLUMNS = ["target", "loss", "variant", "label", "backend", "seed", "status", "acc_mean",
                  "acc_std", "val", "eer", "wall_s", "config_hash"]
SUMMARY_COLUMNS = ["target", "loss", "backend", "seeds", "default_mean", "default_sd",
                   "default_ci95_lo", "default_ci95_hi", "tuned_mean", "tuned_sd",
                   "tuned_ci95_lo", "tuned_ci95_hi", "diff_mean", "diff_ci95_lo",
                   "diff_ci95_hi", "diff_excludes_zero", "diff_p"]
GAP_COLUMNS = ["target", "loss", "variant", "seeds", "torch_mean", "gluon_mean", "diff_mean",
               "diff_sd", "diff_ci95_lo", "diff_ci95_hi", "ci_excludes_zero", "ttest_p"]
RANK_COLUMNS = ["target", "backend", "variant", "rank", "loss", "seeds", "mean", "sd",
                "ci95_lo", "ci95_hi", "tied_with"]


# ---- rows -----------------------------------------------------------------------------------

def trial_rows(studies: dict) -> list[dict]:
    """Every trial of ``studies`` ({name: optuna Study})."""
    rows = []
    for name, study in sorted(studies.items()):
        skip = interrupted(study)
        for tr in study.get_trials(deepcopy=False):
            state = tr.state.name.lower()
            if state == "fail":
                state = "interrupted" if tr.number in skip else "failed"
            a = tr.user_attrs
            rows.append({"study": name, "number": tr.number, "state": state,
                         "value": tr.value if tr.value is not None else math.nan,
                         "val_acc_std": a.get("val_acc_std", math.nan),
                         "status": a.get("status", ""), "wall_s": a.get("wall_s", math.nan),
                         "redo_of": a.get("redo_of", ""), "label": a.get("label", ""),
                         "params": json.dumps(tr.params, sort_keys=True),
                         "commit": a.get("commit", ""), "message": a.get("message", "")})
    return rows


def tuning_rows(entries: list[Entry], studies: dict) -> list[dict]:
    """Per loss: the budget, the counted trials, the best one and the wall time spent."""
    rows = []
    for e in entries:
        study = studies.get(e.study)
        row = {"study": e.study, "loss": e.loss, "budget": math.nan, "complete": 0,
               "failed": 0, "interrupted": 0, "best_trial": "", "best_val_acc": math.nan,
               "best_params": "", "final_params": "", "tuning_wall_s": 0.0}
        if study is not None:
            c = counts(study)
            walls = [tr.user_attrs.get("wall_s", 0.0) for tr in study.get_trials(deepcopy=False)]
            row.update(budget=study.user_attrs.get("budget", math.nan), complete=c["complete"],
                       failed=c["failed"], interrupted=c["interrupted"],
                       tuning_wall_s=round(float(sum(walls)), 3))
            if e.point is not None:
                best = study.best_trial
                row.update(best_trial=best.number, best_val_acc=best.value,
                           best_params=json.dumps(e.point, sort_keys=True),
                           final_params=json.dumps(e.final_point, sort_keys=True))
        rows.append(row)
    return rows


def cell_rows(final: Final, entries: list[Entry], family_hash) -> list[dict]:
    """One row per final cell and target, from the cells matching each config's family
    hash (``family_hash(cfg)``, the harness's)."""
    by_label = {("default", e.default_label): e for e in entries}
    by_label.update({("tuned", e.tuned_label): e for e in entries if e.point is not None})
    rows = []
    for variant, seed, cfg in final.configs(entries):
        out_dir = Path(cfg.results) / Path(cfg.data).name
        for r in res.rows_from_cells(res.load_cells(out_dir, family_hash(cfg))):
            e = by_label.get((variant, r["loss"]))
            if e is None:
                continue
            rows.append({"target": r["target"], "loss": e.study, "variant": variant,
                         "label": r["loss"], "backend": r["backend"], "seed": seed,
                         **{k: r[k] for k in ("status", "acc_mean", "acc_std", "val", "eer",
                                              "wall_s", "config_hash")}})
    rows.sort(key=lambda r: (r["target"], r["loss"], VARIANTS.index(r["variant"]),
                             BACKENDS.index(r["backend"]), r["seed"]))
    return rows


def _ok(rows):
    return [r for r in rows if r["status"] == "ok" and math.isfinite(r["acc_mean"])]


def _by_seed(rows) -> dict:
    """{(target, loss, variant, backend): {seed: acc}} of the finished cells."""
    out: dict = {}
    for r in _ok(rows):
        out.setdefault((r["target"], r["loss"], r["variant"], r["backend"]), {})[r["seed"]] = \
            r["acc_mean"]
    return out


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per (target, loss, backend): default and tuned over seeds, paired tuned - default."""
    acc = _by_seed(rows)
    out = []
    for target, loss, backend in sorted({(t, lo, b) for t, lo, _, b in acc}):
        d, t = acc.get((target, loss, "default", backend), {}), \
            acc.get((target, loss, "tuned", backend), {})
        row = {"target": target, "loss": loss, "backend": backend,
               "seeds": " ".join(map(str, sorted(set(d) | set(t))))}
        for name, values in (("default", d), ("tuned", t)):
            iv = gap.t_interval(list(values.values())) if values else None
            row.update({f"{name}_mean": iv.mean if iv else math.nan,
                        f"{name}_sd": iv.std if iv else math.nan,
                        f"{name}_ci95_lo": iv.lo if iv else math.nan,
                        f"{name}_ci95_hi": iv.hi if iv else math.nan})
        if set(d) & set(t):
            pg = gap.paired_gap(t, d)
            row.update(diff_mean=pg.interval.mean, diff_ci95_lo=pg.interval.lo,
                       diff_ci95_hi=pg.interval.hi, diff_p=pg.p_value,
                       diff_excludes_zero=("n/a" if pg.interval.n < 2
                                           else str(pg.interval.excludes_zero).lower()))
        else:
            row.update(diff_mean=math.nan, diff_ci95_lo=math.nan, diff_ci95_hi=math.nan,
                       diff_p=math.nan, diff_excludes_zero="n/a")
        out.append(row)
    return out


def gap_rows(rows: list[dict]) -> list[dict]:
    """Per (target, loss, variant): the paired torch - gluon gap over seeds."""
    acc = _by_seed(rows)
    out = []
    for target, loss, variant in sorted({(t, lo, v) for t, lo, v, _ in acc}):
        t = acc.get((target, loss, variant, "pytorch"), {})
        g = acc.get((target, loss, variant, "gluon"), {})
        if not set(t) & set(g):
            continue
        pg = gap.paired_gap(t, g)
        out.append({"target": target, "loss": loss, "variant": variant,
                    "seeds": " ".join(map(str, pg.seeds)),
                    "torch_mean": float(np.mean([t[s] for s in pg.seeds])),
                    "gluon_mean": float(np.mean([g[s] for s in pg.seeds])),
                    "diff_mean": pg.interval.mean, "diff_sd": pg.interval.std,
                    "diff_ci95_lo": pg.interval.lo, "diff_ci95_hi": pg.interval.hi,
                    "ci_excludes_zero": ("n/a" if pg.interval.n < 2
                                         else str(pg.interval.excludes_zero).lower()),
                    "ttest_p": pg.p_value})
    return out


def ranking_rows(rows: list[dict]) -> list[dict]:
    """Per (target, backend, variant): the losses ranked with ties."""
    acc = _by_seed(rows)
    out = []
    for target in sorted({k[0] for k in acc}):
        for backend in BACKENDS:
            for variant in VARIANTS:
                intervals = {lo: gap.t_interval(list(v.values()))
                             for (t, lo, va, b), v in acc.items()
                             if (t, va, b) == (target, variant, backend)}
                for rk in gap.rank_with_ties(intervals) if intervals else ():
                    iv = rk.interval
                    out.append({"target": target, "backend": backend, "variant": variant,
                                "rank": rk.rank, "loss": rk.name, "seeds": iv.n,
                                "mean": iv.mean, "sd": iv.std, "ci95_lo": iv.lo,
                                "ci95_hi": iv.hi, "tied_with": " ".join(rk.tied_with)})
    return out


# ---- Markdown -------------------------------------------------------------------------------

def _pct(v) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def _ci(lo, hi) -> str:
    return "" if math.isnan(lo) else f"[{_pct(lo)}, {_pct(hi)}]"


def _acc(mean, lo, hi) -> str:
    return f"{_pct(mean)} {_ci(lo, hi)}".strip()


def _wall(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _point(text: str) -> str:
    if not text:
        return ""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in json.loads(text).items())


def to_markdown(dataset: str, meta: dict, tuning: list[dict], rows: list[dict],
                summary: list[dict], gaps: list[dict], ranks: list[dict]) -> str:
    env, split = meta["environment"], meta["split"]
    backend = meta["tune_backend"]
    done = len(_ok(rows))
    lines = [
        f"# {dataset}: fair tuning, paper defaults vs tuned, PyTorch and Gluon", "",
        "Reality-Check protocol (Musgrave et al., ECCV 2020): the same search budget per loss "
        f"({meta['budget']} finished trials, failed ones included), Optuna TPE seeded "
        f"{meta['sampler_seed']} over each loss's space (`common/search_space.py`: lr, weight "
        "decay and the loss's own hyper-parameters). Objective: 10-fold verification accuracy "
        f"on a validation split of {split['val_identities']} identities carved out of the "
        f"{split['identities']} training identities (fraction {split['fraction']}, split seed "
        f"{split['seed']}, {split['pairs']} pairs); trials train the other "
        f"{split['train_identities']} in {backend} at seed {meta['tune_seed']}. The test pairs "
        "are never seen while tuning. Then each loss's paper default (class defaults at the "
        "profile lr and weight decay) and its best configuration are retrained on the full "
        f"training set in both backends over seeds {meta['final_seeds']} and evaluated on the "
        f"test pairs; cells finished: {done}.", "",
        "Trial config: " + ", ".join(f"`{k}={v}`" for k, v in sorted(meta["trial_config"].items())
                                     if k not in ("lr", "weight_decay", "seed")), "",
        "Final config (paper default): " + ", ".join(
            f"`{k}={v}`" for k, v in sorted(meta["final_config"].items()) if k != "seed"), "",
        f"Studies: `studies.sqlite` (`optuna-dashboard sqlite:///{meta['storage']}`). Tables "
        f"written at commit `{env['git_commit']}`; CPU {env['cpu']}, Python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in sorted(env["packages"].items())), "",
        f"Command: `{meta['command']}`", "",
        "Accuracy in %, mean over seeds with its 95 % Student-t interval. Tuned - default and "
        "torch - gluon are paired by seed (same initial weights, same batches), in points. "
        "Rank: 1 + the number of losses whose whole interval lies above; overlapping "
        "intervals share a rank.", "",
        "## Tuning: budget and best configuration per loss", ""]
    lines += markdown_lines(
        ["loss", "trials (complete / failed)", "interrupted", "best val acc %", "best trial",
         "tuned configuration (retrained)", "tuning wall"],
        ([t["study"], f"{t['complete']} / {t['failed']}", t["interrupted"],
          _pct(t["best_val_acc"]), t["best_trial"], _point(t["final_params"]),
          _wall(t["tuning_wall_s"])] for t in tuning), align="lrrrrlr")
    total = sum(t["tuning_wall_s"] for t in tuning)
    final_wall = sum(r["wall_s"] for r in rows if math.isfinite(r.get("wall_s", math.nan)))
    lines += ["", f"Wall time: tuning {_wall(total)} in all, final cells {_wall(final_wall)}.",
              ""]
    for target in sorted({s["target"] for s in summary}):
        lines += [f"## {target}: paper default vs tuned", ""]
        lines += markdown_lines(
            ["loss", "backend", "seeds", "default acc %", "tuned acc %", "tuned - default (pt)",
             "excludes 0"],
            ([s["loss"], s["backend"], s["seeds"],
              _acc(s["default_mean"], s["default_ci95_lo"], s["default_ci95_hi"]),
              _acc(s["tuned_mean"], s["tuned_ci95_lo"], s["tuned_ci95_hi"]),
              _acc(s["diff_mean"], s["diff_ci95_lo"], s["diff_ci95_hi"]),
              s["diff_excludes_zero"]] for s in summary if s["target"] == target),
            align="llrrrrl")
        other = [b for b in BACKENDS if b != backend]
        lines += ["", f"## {target}: does a configuration tuned in {backend} transfer to "
                  f"{', '.join(other)}? (torch - gluon, paired by seed)", ""]
        by = {(g["loss"], g["variant"]): g for g in gaps if g["target"] == target}
        lines += markdown_lines(
            ["loss", "default: gap (pt)", "tuned: gap (pt)", "tuned: excludes 0"],
            ([loss, _acc(*(by[loss, "default"][k] for k in ("diff_mean", "diff_ci95_lo",
                                                             "diff_ci95_hi")))
              if (loss, "default") in by else "",
              _acc(*(by[loss, "tuned"][k] for k in ("diff_mean", "diff_ci95_lo",
                                                     "diff_ci95_hi")))
              if (loss, "tuned") in by else "",
              by[loss, "tuned"]["ci_excludes_zero"] if (loss, "tuned") in by else ""]
             for loss in sorted({lo for lo, _ in by})), align="lrrl")
        for variant in ("tuned", "default"):
            for b in BACKENDS:
                rr = [r for r in ranks if (r["target"], r["backend"], r["variant"])
                      == (target, b, variant)]
                if not rr:
                    continue
                lines += ["", f"## {target}: ranking, {variant}, {b}", ""]
                lines += markdown_lines(
                    ["rank", "loss", "seeds", "acc %", "95 % CI", "tied with"],
                    ([r["rank"], r["loss"], r["seeds"], _pct(r["mean"]),
                      _ci(r["ci95_lo"], r["ci95_hi"]), r["tied_with"]] for r in rr),
                    align="rlrrrl")
        lines.append("")
    if not rows:
        lines += ["No final cell yet: `--stage final` (or `all`) retrains each loss's default "
                  "and best configuration.", ""]
        return "\n".join(lines)
    lines += ["## Every final cell", ""]
    lines += markdown_lines(
        ["target", "loss", "variant", "backend", "seed", "status", "acc %", "wall"],
        ([r["target"], r["label"], r["variant"], r["backend"], r["seed"], r["status"],
          _pct(r["acc_mean"]), _wall(r["wall_s"]) if math.isfinite(r["wall_s"]) else ""]
         for r in rows), align="lllllrrr")
    lines += ["", "![default vs tuned, both backends](tuning.png)", ""]
    return "\n".join(lines)


# ---- figure ---------------------------------------------------------------------------------

def _best(values) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else -math.inf


def figure(summary: list[dict], path: Path) -> Path | None:
    """Per target: each loss's default (hollow) and tuned (filled) accuracy in both backends,
    with the 95 % intervals over seeds."""
    from matplotlib.figure import Figure

    from bench.report.plots import STYLE, save_figure

    targets = sorted({s["target"] for s in summary})
    if not targets:
        return None
    n = max(len({s["loss"] for s in summary if s["target"] == t}) for t in targets)
    fig = Figure(figsize=(7.5, (0.32 * n + 1.3) * len(targets)), layout="constrained")
    for k, target in enumerate(targets):
        ax = fig.add_subplot(len(targets), 1, k + 1)
        rows = {(s["loss"], s["backend"]): s for s in summary if s["target"] == target}
        losses = sorted({lo for lo, _ in rows}, key=lambda lo: _best(
            [rows[lo, b][f"{v}_mean"] for b in BACKENDS for v in VARIANTS if (lo, b) in rows]))
        y = np.arange(len(losses))
        for j, (backend, variant) in enumerate((b, v) for b in BACKENDS for v in VARIANTS):
            got = [rows.get((lo, backend)) for lo in losses]
            mean = np.array([100 * g[f"{variant}_mean"] if g else np.nan for g in got])
            lo_ = np.array([100 * g[f"{variant}_ci95_lo"] if g else np.nan for g in got])
            hi_ = np.array([100 * g[f"{variant}_ci95_hi"] if g else np.nan for g in got])
            err = np.vstack([np.nan_to_num(mean - lo_), np.nan_to_num(hi_ - mean)])
            color = STYLE[backend]["color"]
            ax.errorbar(mean, y + 0.3 - 0.2 * j, xerr=err, fmt="o", ms=4, lw=1, capsize=2,
                        color=color, mfc=color if variant == "tuned" else "white",
                        label=f"{backend}, {variant}")
        ax.set_yticks(y, losses, fontsize="small")
        ax.set_xlabel("verification accuracy, % (mean, 95 % interval over seeds)")
        ax.set_title(f"{target}: paper default (hollow) vs tuned (filled)", fontsize="medium")
        left, right = ax.get_xlim()  # accuracies live in [0, 100]; 2-seed intervals do not
        ax.set_xlim(max(left, 0.0), min(right, 100.0))
        ax.legend(fontsize="x-small", loc="best")
        ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


# ---- the whole report -----------------------------------------------------------------------

def write_report(out: Path, dataset: str, entries: list[Entry], studies: dict, final: Final,
                 meta: dict, family_hash, plots: bool = True) -> Path:
    """Rebuild every table (and the figure) of ``out``; returns results.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trials = trial_rows(studies)
    tuning = tuning_rows(entries, studies)
    rows = cell_rows(final, entries, family_hash)
    summary, gaps, ranks = summary_rows(rows), gap_rows(rows), ranking_rows(rows)
    write_csv_tables(out, (("trials.csv", trials, TRIAL_COLUMNS),
                           ("tuning.csv", tuning, TUNING_COLUMNS),
                           ("results.csv", rows, RESULT_COLUMNS),
                           ("summary.csv", summary, SUMMARY_COLUMNS),
                           ("gap.csv", gaps, GAP_COLUMNS),
                           ("ranking.csv", ranks, RANK_COLUMNS)), meta)
    md = out / "results.md"
    atomic_write_bytes(md, to_markdown(dataset, meta, tuning, rows, summary, gaps,
                                       ranks).encode("utf-8"))
    if plots:
        figure(summary, out / "tuning.png")
    return md
