"""Result tables of the comparison harness: per-cell JSON, then CSV + Markdown, all atomic.

Layout under ``results/<dataset>/``:

- ``cells/<loss>__<backend>.json``: one finished (or failed) cell: its config and hash, the
  training history (per-step loss/accuracy/LR, per-epoch evaluation), final evaluation per
  verification target (with the ROC curve) and timings. The tables are rebuilt from these files,
  so a rerun with the same config skips finished cells and an interrupted run loses nothing.
- ``results.csv``: one row per (target, loss, backend), the last column the cell's exported
  model folder (``model_dir``, empty for failed cells); ``#`` lines on top carry the metadata
  (config, seed, git commit, package versions, CPU). Read with ``pandas.read_csv(p, comment="#")``.
- ``results.md``: the same as Markdown tables, one per verification target.

Every file is written with ``common.fileio.atomic_write_bytes`` (temp file + fsync + rename).
Timing columns (img/s, head ms, wall s) differ between runs; every other column is a pure
function of the config on deterministic kernels: the same command twice gives bit-identical
metric columns per backend on this CPU build (tests/bench/test_resume.py checks it across a
kill -9).
What would break that: a different thread count (oneDNN and OpenMP reductions change their
summation order), another CPU ISA (AVX2 vs AVX-512 kernels), GPU atomics (scatter/index_add in
centre-loss updates, cuDNN algorithm search) and a regenerated data set (new mtime: new hash).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np

from bench.report.tables import csv_with_metadata, markdown_lines
from common.fileio import atomic_write_bytes

COLUMNS = [
    "target", "loss", "backend", "status", "acc_mean", "acc_std", "val", "val_std", "far",
    "eer", "auc", "final_train_loss", "final_train_acc", "acc_diff_vs_other", "img_per_s",
    "head_ms_per_step", "wall_s", "epochs", "steps", "seed", "config_hash", "message",
    "model_dir",
]
PACKAGES = ("numpy", "torch", "mxnet", "scipy", "opencv-python-headless", "pandas", "matplotlib")


def config_hash(config: dict) -> str:
    """Stable 12-hex hash of a JSON-able config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


_COMMITS: dict = {}


def git_commit(root: Path | None = None) -> str:
    """HEAD (+ "-dirty") when first asked in this process: the code a long run imported at its
    start, not whatever HEAD is when a later cell is written (commits made during a run)."""
    root = root or Path(__file__).resolve().parents[2]
    if str(root) not in _COMMITS:
        _COMMITS[str(root)] = _read_git_commit(root)
    return _COMMITS[str(root)]


def _read_git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        # results/ is the bench's own output, rewritten while it runs: not a code change
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"],
                               cwd=root, capture_output=True, text=True, timeout=10)
        return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Git commit, package versions, CPU and Python: what a reader needs to trust a number."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {"git_commit": git_commit(), "python": platform.python_version(),
            "packages": versions, "cpu": cpu_name(), "platform": platform.platform(),
            "threads": os.environ.get("OMP_NUM_THREADS", "unset")}


def loss_stem(loss: str) -> str:
    """A loss label as a file-name part without glob characters ("arcface+center" ->
    "arcface_plus_center", "arcface[margin=0.3,scale=32.0]" -> "arcface@margin=0.3@scale=32.0")."""
    return loss.replace("+", "_plus_").replace("[", "@").replace("]", "").replace(",", "@")


def cell_stem(loss: str, backend: str) -> str:
    """The one file-name stem of a cell: its record, results and checkpoints start with it."""
    return f"{loss_stem(loss)}__{backend}"


def cell_path(out_dir: Path, loss: str, backend: str) -> Path:
    return Path(out_dir) / "cells" / f"{cell_stem(loss, backend)}.json"


def configs_in(out_dir: Path) -> list[dict]:
    """The distinct run configs (a cell's ``config``: ``hashed(cfg)``) of the cells in a
    results folder."""
    found = {}
    for p in sorted((Path(out_dir) / "cells").glob("*.json")):
        cell = read_cell(p)
        if cell and isinstance(cell.get("config"), dict):
            found[json.dumps(cell["config"], sort_keys=True)] = cell["config"]
    return list(found.values())


def results_folder(results: Path, dataset: str, config: dict) -> Path:
    """Where a run of ``config`` (``hashed(cfg)``) keeps its cells and tables.

    ``RESULTS/<dataset>/`` when it holds no cells or cells of this config (a rerun, another
    loss, or the same config on regenerated data, whose cells are retrained in place);
    otherwise ``RESULTS/<dataset>@<config hash>/`` beside it, so that a run with other settings
    never replaces another configuration's finished cells, tables and models (a trial run of
    ``bench run --epochs 5`` leaves the committed default table as it was).
    """
    base = Path(results) / dataset
    held = configs_in(base)
    if not held or config in held:
        return base
    return Path(results) / f"{dataset}@{config_hash(config)}"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))


def read_cell(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_done(out_dir: Path, loss: str, backend: str, cell_hash: str) -> bool:
    """A finished cell with this exact config exists (failed cells are retried)."""
    cell = read_cell(cell_path(out_dir, loss, backend))
    return bool(cell and cell.get("config_hash") == cell_hash and cell.get("status") == "ok")


def load_cells(out_dir: Path, family_hash: str) -> list[dict]:
    """Cells written with the same run config (everything but loss and backend)."""
    cells = []
    for p in sorted((Path(out_dir) / "cells").glob("*.json")):
        cell = read_cell(p)
        if cell and cell.get("family_hash") == family_hash:
            cells.append(cell)
    return cells


def rows_from_cells(cells: list[dict]) -> list[dict]:
    """Flatten cells into table rows; adds the accuracy difference between the two backends."""
    rows = []
    for cell in cells:
        history = cell.get("history") or {}
        timing = history.get("timing", {})
        steps = history.get("steps", {}).get("loss", [])
        accs = history.get("steps", {}).get("acc", [])
        last_epoch = (history.get("epochs") or [{}])[-1]
        base = {
            "loss": cell["loss"], "backend": cell["backend"], "status": cell["status"],
            "final_train_loss": last_epoch.get("train_loss", steps[-1] if steps else math.nan),
            "final_train_acc": last_epoch.get("train_acc", accs[-1] if accs else math.nan),
            "img_per_s": (timing["images"] / timing["seconds"]
                          if timing.get("seconds") else math.nan),
            "head_ms_per_step": (1000 * timing["head_seconds"] / timing["head_steps"]
                                 if timing.get("head_steps") else math.nan),
            "wall_s": timing.get("wall_seconds", math.nan),
            "epochs": len(history.get("epochs", [])), "steps": len(steps),
            "seed": cell["config"]["seed"], "config_hash": cell["config_hash"],
            "message": cell.get("message", ""), "model_dir": cell.get("model_dir", ""),
        }
        finals = cell.get("final_eval") or {}
        targets = sorted(finals) or sorted(cell.get("targets", [])) or ["-"]
        for target in targets:
            m = finals.get(target, {})
            rows.append({**base, "target": target,
                         **{k: m.get(k, math.nan)
                            for k in ("acc_mean", "acc_std", "val", "val_std", "far", "eer",
                                      "auc")}})
    by_key = {(r["target"], r["loss"], r["backend"]): r for r in rows}
    for r in rows:
        others = [o for (t, lo, b), o in by_key.items()
                  if t == r["target"] and lo == r["loss"] and b != r["backend"]]
        r["acc_diff_vs_other"] = (r["acc_mean"] - others[0]["acc_mean"]) if others else math.nan
    rows.sort(key=lambda r: (r["target"], r["loss"], r["backend"]))
    return rows


def _fmt(v, digits=4):
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def to_csv(rows: list[dict], meta: dict) -> str:
    return csv_with_metadata(rows, COLUMNS, meta)


MD_COLUMNS = [
    ("loss", "loss"), ("backend", "backend"), ("status", "status"), ("acc_mean", "acc"),
    ("acc_std", "+-"), ("val", "VAL@FAR=1e-3"), ("eer", "EER"), ("acc_diff_vs_other", "acc diff"),
    ("final_train_loss", "train loss"), ("img_per_s", "img/s"),
    ("head_ms_per_step", "head ms/step"), ("wall_s", "wall s"),
]
_DIGITS = {"img_per_s": 1, "wall_s": 1, "head_ms_per_step": 2}


def to_markdown(rows: list[dict], meta: dict, title: str) -> str:
    lines = [f"# {title}", ""]
    cfg = meta.get("config", {})
    env = meta.get("environment", {})
    lines.append("Config: " + ", ".join(f"`{k}={cfg[k]}`" for k in sorted(cfg)))
    lines.append("")
    lines.append(f"Commit `{env.get('git_commit', '?')}`, CPU {env.get('cpu', '?')}, "
                 + ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items())))
    if meta.get("command"):
        lines += ["", f"Command: `{meta['command']}`"]
    lines.append("")
    lines.append("acc = 10-fold verification accuracy (mean, +- std); acc diff = this backend "
                 "minus the other; img/s = training throughput without warm-up steps; head "
                 "ms/step = loss forward + backward.")
    for target in sorted({r["target"] for r in rows}):
        lines += ["", f"## {target}", ""]
        lines += markdown_lines([h for _, h in MD_COLUMNS],
                                ([_fmt(r[key], _DIGITS.get(key, 4)) for key, _ in MD_COLUMNS]
                                 for r in rows if r["target"] == target))
    return "\n".join(lines) + "\n"


def write_tables(out_dir: Path, rows: list[dict], meta: dict, title: str) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "results.csv", out_dir / "results.md"
    atomic_write_bytes(csv_path, to_csv(rows, meta).encode("utf-8"))
    atomic_write_bytes(md_path, to_markdown(rows, meta, title).encode("utf-8"))
    return csv_path, md_path


def result_path(out_dir: Path, loss: str, backend: str, target: str) -> Path:
    return cell_path(out_dir, loss, backend).with_suffix(f".{target}.npz")


def save_result(path: Path, result) -> None:
    """A ``VerificationResult`` (without its ``unflipped`` twin) as an atomic ``.npz``."""
    import dataclasses

    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
              if f.name != "unflipped"}
    fields["flip"] = -1 if fields["flip"] is None else int(fields["flip"])
    buf = io.BytesIO()
    np.savez(buf, **fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def load_result(path: Path):
    """Inverse of ``save_result``: a ``VerificationResult`` for the ROC plots."""
    from common.verification import VerificationResult

    with np.load(path, allow_pickle=False) as z:
        fields = {k: z[k] for k in z.files}
    for k, v in fields.items():
        if v.ndim == 0:
            fields[k] = v.item()
    fields["flip"] = None if fields["flip"] == -1 else bool(fields["flip"])
    return VerificationResult(**fields)
