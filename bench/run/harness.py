"""The comparison harness: every loss x both backends, identical start, identical data.

For one data folder (``train.rec``/``train.idx``/``property`` plus verification ``*.bin``):

1. Pre-flight, before any training: the data folder and its ``.bin`` files exist, the loss and
   backbone names are known to both backends, the results and checkpoint folders are writable
   and have free space. Every problem raises here with the path or name in the message.
2. The training images are decoded once per process at the training size, the ``.bin`` files
   once per (file, size) (``bench.run.data``, shared by all cells).
3. Per cell (loss, backend): ``bench.run.cell`` (or, with ``nproc > 1``, its multi-process
   twin ``bench.run.distributed``) trains both backends from the same weights on the same
   batches and evaluates every ``.bin``.
4. A finished cell's model is exported to ``<models>/<dataset>/<cell stem>/`` (model.npz,
   head.npz, model.json last; ``bench.run.export``), then the cell is written to
   ``results/<dataset>/cells/`` (atomically, with ``model_dir``) and the tables are rebuilt;
   where that folder holds another configuration's cells, the run writes to
   ``<dataset>@<config hash>/`` beside it instead (``results_folder``); models likewise, by
   the configs in their model.json (``export.models_folder``);
   a cell that hit NaN/Inf is recorded with status ``nonfinite`` and the others go on.
   A cell already finished with the same config is skipped (its model folder kept) unless
   ``force``, which retrains it and rewrites its model folder.
"""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path

from bench.report import results as res
from bench.run import cell as cells
from bench.run import distributed, export, loss_settings
from bench.run.config import HarnessConfig, hashed
from bench.run.data import data_fingerprint, train_images, verification_sets
from common import backends

MIN_FREE_BYTES = 64 * 2**20
TITLE = "{dataset}: margin losses, PyTorch vs Gluon"

__all__ = ["HarnessConfig", "run", "preflight", "known_losses", "default_losses"]


def known_losses(names=backends.BACKENDS) -> list[str]:
    """Loss names registered in every requested backend (the bench loops over these)."""
    common = None
    for b in names:
        got = set(backends.load(b).losses.list_losses())
        common = got if common is None else common & got
    return sorted(common or ())


def default_losses(known: list[str]) -> list[str]:
    """The default run: every registered loss, the joint "<margin>+<aux>" objectives included."""
    return list(known)


def preflight(cfg: HarnessConfig) -> tuple[Path, list[Path], list[str]]:
    """All checks that can fail before training; returns (data folder, .bin files, the loss
    labels of the cells: ``arcface``, or ``arcface[margin=0.3]`` with ``loss_args``)."""
    cfg.check()
    data = Path(cfg.data)
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {data} does not exist (expected train.rec, "
                                "train.idx, property and *.bin)")
    for name in ("train.rec", "train.idx", "property"):
        if not (data / name).is_file():
            raise FileNotFoundError(f"data folder {data} lacks {name}")
    bins = sorted(data.glob("*.bin"))
    if not bins:
        raise FileNotFoundError(f"data folder {data} holds no verification *.bin file")
    losses = loss_settings.run_labels(cfg.losses, cfg.loss_args, known_losses(cfg.backends))
    for b in cfg.backends:
        names = backends.load(b).backbones.list_backbones()
        if cfg.backbone not in names:
            raise ValueError(f"unknown backbone {cfg.backbone!r} for {b}; known: "
                             f"{', '.join(names)}")
    for folder in (Path(cfg.results) / data.name, Path(cfg.runs) / data.name,
                   Path(cfg.models) / data.name):
        _check_writable(folder)
    return data, bins, losses


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # one name per process: two runs started together must not unlink each other's
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise OSError(f"folder {folder} is not writable: {exc.strerror or exc}") from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise OSError(f"folder {folder} has only {free / 2**20:.0f} MiB free; need at least "
                      f"{MIN_FREE_BYTES / 2**20:.0f} MiB for checkpoints and results")


def family_hash(cfg: HarnessConfig, data: Path, bins: list[Path]) -> str:
    """The hash shared by every cell of one run config on one data set (tables group by it)."""
    return res.config_hash(_family(cfg, data, bins))


def config_family_hash(cfg: HarnessConfig) -> str:
    """``family_hash`` of a config with its data folder's ``*.bin`` files (the tables of a run
    read the cells of this hash; other configs' cells are ignored)."""
    data = Path(cfg.data)
    return family_hash(cfg, data, sorted(data.glob("*.bin")))


def _family(cfg: HarnessConfig, data: Path, bins: list[Path]) -> dict:
    return {**hashed(cfg), "data": data_fingerprint(data, bins)}


def run(cfg: HarnessConfig, log=print) -> list[dict]:
    """Run every requested cell; returns the cell records (finished, skipped and failed)."""
    data, bins, losses = preflight(cfg)
    dataset = data.name
    out_dir = res.results_folder(cfg.results, dataset, hashed(cfg))
    if out_dir.name != dataset:
        log(f"[note] {Path(cfg.results) / dataset} holds the results of another configuration; "
            f"this run writes beside it: tables and cells to {out_dir}")
    models = export.models_folder(cfg.models, out_dir.name, hashed(cfg))
    if models != out_dir.name:
        log(f"[note] {Path(cfg.models) / out_dir.name} holds the models of another "
            f"configuration; this run exports its models beside it, to {Path(cfg.models) / models}")
    family = _family(cfg, data, bins)
    fam_hash = res.config_hash(family)
    meta = {"config": hashed(cfg), **({"loss_args": cfg.loss_args} if cfg.loss_args else {}),
            "seed": cfg.seed, "dataset": dataset,
            "targets": [b.stem for b in bins], "environment": res.environment(),
            "command": cfg.command}
    title = TITLE.format(dataset=dataset)
    train_data = targets = None
    records = []
    for loss_name in losses:
        for backend in cfg.backends:
            cell_hash = res.config_hash({**family, "loss": loss_name, "backend": backend})
            path = res.cell_path(out_dir, loss_name, backend)
            if not cfg.force and res.is_done(out_dir, loss_name, backend, cell_hash):
                done = res.read_cell(path)
                model = f"; model {done['model_dir']}" if done.get("model_dir") else ""
                log(f"[skip] {loss_name}/{backend}: finished with this config ({path}{model})")
                records.append(done)
                continue
            if train_data is None:
                train_data = train_images(data, cfg.image_size)
                targets = verification_sets(bins, cfg.image_size)
            if cfg.force:
                cells.checkpoint_path(cfg, dataset, loss_name, backend, cell_hash).unlink(
                    missing_ok=True)
            runner = (distributed.run_cell if backend == "pytorch" and cfg.nproc > 1
                      else cells.run_cell)
            try:
                record = runner(cfg, dataset, loss_name, backend, train_data, targets,
                                fam_hash, cell_hash)
                model = record.pop("_model", None)
                if record["status"] == "ok":  # finished only once its model is written
                    if model is None:
                        raise RuntimeError(f"the {loss_name}/{backend} cell returned no model "
                                           "to export")
                    record.setdefault("git_commit", res.git_commit())
                    record["model_dir"] = str(export.write_cell_model(
                        cfg, record, model, family["data"], folder=models))
            except Exception as exc:  # noqa: BLE001  (one broken cell must not stop the others)
                record = cells.new_record(cfg, dataset, loss_name, backend, fam_hash, cell_hash,
                                          targets)
                record.update(status="error", message=f"{type(exc).__name__}: {exc}",
                              history=None, final_eval={}, traceback=traceback.format_exc())
            record.setdefault("git_commit", res.git_commit())  # the code that trained it
            for target, result in record.pop("_results", {}).items():
                res.save_result(res.result_path(out_dir, loss_name, backend, target), result)
            res.write_json(path, record)
            records.append(record)
            log(cell_line(record))
            if record["status"] == "ok":
                cells.remove_checkpoints(cfg, dataset, loss_name, backend, cell_hash)
            rows = res.rows_from_cells(res.load_cells(out_dir, fam_hash))
            res.write_tables(out_dir, rows, meta, title)
    # once more at the end, so the tables name this command even when every cell was skipped
    rows = res.rows_from_cells(res.load_cells(out_dir, fam_hash))
    if rows:
        res.write_tables(out_dir, rows, meta, title)
    if cfg.plots:
        from bench.report import plots

        for p in plots.make_all(out_dir, res.load_cells(out_dir, fam_hash)):
            log(f"[plot] {p}")
    return records


def cell_line(record: dict) -> str:
    """The one-line log of a finished cell."""
    if record["status"] != "ok":
        return f"[{record['status']}] {record['loss']}/{record['backend']}: {record['message']}"
    parts = [f"{t} acc {m['acc_mean']:.4f}+-{m['acc_std']:.4f}"
             for t, m in sorted(record["final_eval"].items())]
    timing = record["history"]["timing"]
    ips = timing["images"] / timing["seconds"] if timing["seconds"] else float("nan")
    model = f", model {record['model_dir']}" if record.get("model_dir") else ""
    return (f"[ok] {record['loss']}/{record['backend']}: " + ", ".join(parts)
            + f", train loss {record['history']['epochs'][-1]['train_loss']:.4f}, {ips:.0f} "
            f"img/s, {timing['wall_seconds']:.1f} s{model}")
