"""The comparison harness: every loss x both backends, identical start, identical data.

For one data folder (``train.rec``/``train.idx``/``property`` plus verification ``*.bin``):

1. Pre-flight, before any training: the data folder and its ``.bin`` files exist, the loss and
   backbone names are known to both backends, the results and checkpoint folders are writable
   and have free space. Every problem raises here with the path or name in the message.
2. The training images are decoded once per process at the training size, the ``.bin`` files
   once per (file, size) (module-level caches shared by all cells).
3. Per cell (loss, backend): the PyTorch backbone and loss are built under ``torch.manual_seed
   (seed)``; the Gluon run receives those very numbers via ``transfer`` and ``load_loss_state``,
   so both start from the same weights. Both train with ``common.trainloop.fit`` on the same
   ``EpochSampler`` batches and flips and the same ``LRSchedule``; each epoch ends with the
   verification protocol on every ``.bin``, and the final evaluation keeps the ROC curve.
4. The cell is written to ``results/<dataset>/cells/`` (atomically) and the tables are rebuilt;
   a cell that hit NaN/Inf is recorded with status ``nonfinite`` and the others go on.
   A cell already finished with the same config is skipped unless ``force``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import results as res
from common.binfile import decode_bin, load_bin
from common.face_dataset import FaceRecordDataset
from common.images import make_batch
from common.sampler import EpochSampler
from common.schedule import MODES, build_schedule
from common.trainloop import NonFiniteError, fit

BACKENDS = ("pytorch", "gluon")
MIN_FREE_BYTES = 64 * 2**20


@dataclass
class HarnessConfig:
    """Everything that decides a run; all of it but ``force``/``progress``/paths is hashed."""

    data: str
    results: str = "results"
    runs: str = "runs"
    losses: tuple[str, ...] = ()  # empty: default_losses(); ("all",): every registered loss
    backends: tuple[str, ...] = BACKENDS
    backbone: str = "smallcnn"
    backbone_kwargs: dict = field(default_factory=dict)
    embedding_size: int = 512
    image_size: int = 48
    epochs: int = 3
    batch_size: int = 64
    lr: float = 0.1
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    pk: int = 4
    eval_batch_size: int = 200
    flip_test: bool = True
    checkpoint_every: int = 0
    hybridize: bool = True  # Gluon backbone hybridised with static_alloc (False: imperative)
    nproc: int = 1  # PyTorch processes per cell (torch.distributed, gloo on CPU); global batch
    sample_rate: float = 1.0  # Partial-FC negative-class sampling rate when nproc > 1
    force: bool = False
    progress: bool = True
    plots: bool = True
    command: str = ""

    def check(self) -> None:
        if not self.backends:
            raise ValueError("backends must name at least one of pytorch, gluon")
        for b in self.backends:
            if b not in BACKENDS:
                raise ValueError(f"backends must be among {', '.join(BACKENDS)}, got {b!r}")
        for name in ("embedding_size", "image_size", "epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.schedule not in MODES:
            raise ValueError(f"schedule must be one of {', '.join(MODES)}, got {self.schedule!r}")
        if not isinstance(self.nproc, int) or not 1 <= self.nproc <= self.batch_size:
            raise ValueError(f"nproc must be an integer in [1, batch_size={self.batch_size}], "
                             f"got {self.nproc!r}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if self.pk < 2 or self.batch_size % self.pk:
            raise ValueError(f"pk must be >= 2 and divide batch_size={self.batch_size}, "
                             f"got {self.pk!r}")


def _hashed(cfg: HarnessConfig) -> dict:
    d = dataclasses.asdict(cfg)
    for k in ("results", "runs", "losses", "backends", "force", "progress", "plots", "command",
              "data"):
        d.pop(k)
    # added after results existed: hashed only when not at the single-process default, so
    # finished single-process cells keep their hashes
    if d["nproc"] == 1 and d["sample_rate"] == 1.0:
        d.pop("nproc")
        d.pop("sample_rate")
    return d


# ---- data, decoded once per process ---------------------------------------------------------

_TRAIN_CACHE: dict = {}
_BIN_CACHE: dict = {}


def train_images(data: Path, image_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(uint8 N x S x S x 3, int64 labels, num_classes), decoded once per process."""
    key = (str(Path(data).resolve()), image_size)
    if key not in _TRAIN_CACHE:
        ds = FaceRecordDataset(data, image_size=image_size)
        try:
            images = np.stack([ds[i][0] for i in range(len(ds))])
        finally:
            ds.close()
        _TRAIN_CACHE[key] = (images, ds.labels.copy(), int(ds.num_classes))
    return _TRAIN_CACHE[key]


def verification_sets(bins: list[Path], image_size: int) -> dict[str, tuple]:
    """{target name: (uint8 images, bool issame)} for each ``.bin``, decoded once per process."""
    out = {}
    for path in bins:
        key = (str(path.resolve()), image_size)
        if key not in _BIN_CACHE:
            encoded, issame = load_bin(path)
            _BIN_CACHE[key] = (decode_bin(encoded, image_size=image_size), np.asarray(issame))
        out[path.stem] = _BIN_CACHE[key]
    return out


def data_fingerprint(data: Path, bins: list[Path]) -> dict:
    """Names, sizes and mtimes: a regenerated data set invalidates finished cells."""
    files = [data / "train.rec", data / "property", *bins]
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.exists()}


# ---- backends -------------------------------------------------------------------------------

def _backend(name: str):
    if name == "pytorch":
        import pytorch_impl.backbones as backbones
        import pytorch_impl.losses as losses
        import pytorch_impl.train as train
        import pytorch_impl.transfer as transfer
    else:
        import gluon_impl.backbones as backbones
        import gluon_impl.losses as losses
        import gluon_impl.train as train
        import gluon_impl.transfer as transfer
    return backbones, losses, train, transfer


def known_losses(backends=BACKENDS) -> list[str]:
    """Loss names registered in every requested backend (the bench loops over these)."""
    names = None
    for b in backends:
        got = set(_backend(b)[1].list_losses())
        names = got if names is None else names & got
    return sorted(names or ())


def default_losses(known: list[str]) -> list[str]:
    """The default run: every registered loss, the joint "<margin>+<aux>" objectives included."""
    return list(known)


def initial_state(cfg: HarnessConfig, loss_name: str, num_classes: int) -> tuple[dict, dict]:
    """The starting weights of a cell: PyTorch modules built under ``manual_seed(seed)``."""
    import torch

    backbones, losses, _, transfer = _backend("pytorch")
    torch.manual_seed(cfg.seed)
    net = backbones.build_backbone(cfg.backbone, embedding_size=cfg.embedding_size,
                                   image_size=cfg.image_size, **cfg.backbone_kwargs)
    loss = losses.build_loss(loss_name, num_classes=num_classes,
                             embedding_size=cfg.embedding_size)
    from pytorch_impl.losses.base import loss_state

    return transfer.export_params(net), loss_state(loss)


def build_trainer(backend: str, cfg: HarnessConfig, loss_name: str, num_classes: int,
                  params: dict, lstate: dict):
    """A backend's Trainer whose backbone and loss hold exactly ``params`` and ``lstate``."""
    backbones, losses, train, transfer = _backend(backend)
    net = backbones.build_backbone(cfg.backbone, embedding_size=cfg.embedding_size,
                                   image_size=cfg.image_size, **cfg.backbone_kwargs)
    loss = losses.build_loss(loss_name, num_classes=num_classes,
                             embedding_size=cfg.embedding_size)
    if backend == "gluon":
        loss.initialize()  # build_backbone initialises the backbone; the loss is ours to do
    transfer.import_params(net, params)
    losses_base = sys.modules[f"{losses.__name__}.base"]
    losses_base.load_loss_state(loss, lstate)
    return train.Trainer(net, loss, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                         hybridize=cfg.hybridize)


# ---- one cell -------------------------------------------------------------------------------

def _summary(result) -> dict:
    return {"acc_mean": float(result.accuracy_mean), "acc_std": float(result.accuracy_std),
            "val": float(result.val_mean), "val_std": float(result.val_std),
            "far": float(result.far_mean), "eer": float(result.eer), "auc": float(result.auc),
            "xnorm": float(result.xnorm)}


def make_evaluator(cfg: HarnessConfig, targets: dict):
    """``evaluate(embed_fn)`` for ``common.trainloop.fit`` (summaries per target) and the dict
    it refills with the full results of the latest evaluation (ROC, per-pair distances)."""
    from common.verification import evaluate as verify

    last_full: dict = {}

    def evaluate(embed_fn):
        full = {name: verify(embed_fn, imgs, same, batch_size=min(cfg.eval_batch_size,
                                                                   len(imgs)),
                             flip=cfg.flip_test, progress=False)
                for name, (imgs, same) in targets.items()}
        last_full.clear()
        last_full.update(full)
        return {name: _summary(r) for name, r in full.items()}

    return evaluate, last_full


def run_cell(cfg: HarnessConfig, dataset: str, loss_name: str, backend: str,
             data: tuple, targets: dict, family_hash: str, cell_hash: str) -> dict:
    """Train and evaluate one (loss, backend); returns the cell record (never raises NaN)."""

    images, labels, num_classes = data
    cell = {"dataset": dataset, "loss": loss_name, "backend": backend, "config": _hashed(cfg),
            "config_hash": cell_hash, "family_hash": family_hash, "targets": sorted(targets)}
    params, lstate = initial_state(cfg, loss_name, num_classes)
    trainer = build_trainer(backend, cfg, loss_name, num_classes, params, lstate)
    pk = cfg.pk if getattr(trainer.loss, "requires_pk_batches", False) else None
    sampler = EpochSampler(labels, cfg.batch_size, cfg.seed, pk=pk)
    schedule = build_schedule(cfg.schedule, cfg.lr, cfg.epochs, len(sampler),
                              warmup_epochs=cfg.warmup_epochs)
    evaluate, last_full = make_evaluator(cfg, targets)

    ckpt_dir = Path(cfg.runs) / dataset
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / f"{loss_name.replace('+', '_plus_')}__{backend}-{cell_hash}.ckpt.npz"
    started = time.perf_counter()
    try:
        history = fit(trainer, sampler, labels, lambda idx, flips: make_batch(images[idx], flips),
                      schedule, cfg.epochs, checkpoint=ckpt, evaluate=evaluate,
                      checkpoint_every=cfg.checkpoint_every, progress=cfg.progress,
                      desc=f"{loss_name}/{backend}")
    except NonFiniteError as exc:
        cell.update(status="nonfinite", message=str(exc), history=None, final_eval={})
        return cell
    if not last_full:  # the checkpoint was already final: evaluate the restored weights
        evaluate(trainer.embed)
    cell.update(status="ok", message="", history=history,
                final_eval={name: _summary(r) for name, r in last_full.items()},
                cell_seconds=time.perf_counter() - started)
    # the full VerificationResult objects (ROC, distances) go to .npz beside the cell JSON
    cell["_results"] = dict(last_full)
    return cell


# ---- the whole run --------------------------------------------------------------------------

def preflight(cfg: HarnessConfig) -> tuple[Path, list[Path], list[str]]:
    """All checks that can fail before training; returns (data folder, .bin files, losses)."""
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
    known = known_losses(cfg.backends)
    losses = default_losses(known) if not cfg.losses else list(cfg.losses)
    if losses == ["all"]:
        losses = known
    unknown = [n for n in losses if n not in known]
    if unknown:
        raise ValueError(f"unknown loss(es) {', '.join(unknown)}; known in "
                         f"{'+'.join(cfg.backends)}: {', '.join(known)}")
    for b in cfg.backends:
        names = _backend(b)[0].list_backbones()
        if cfg.backbone not in names:
            raise ValueError(f"unknown backbone {cfg.backbone!r} for {b}; known: "
                             f"{', '.join(names)}")
    for folder in (Path(cfg.results) / data.name, Path(cfg.runs) / data.name):
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
    return data, bins, losses


def run(cfg: HarnessConfig, log=print) -> list[dict]:
    """Run every requested cell; returns the cell records (finished, skipped and failed)."""
    data, bins, losses = preflight(cfg)
    dataset = data.name
    out_dir = Path(cfg.results) / dataset
    family = {**_hashed(cfg), "data": data_fingerprint(data, bins)}
    family_hash = res.config_hash(family)
    meta = {"config": _hashed(cfg), "seed": cfg.seed, "dataset": dataset,
            "targets": [b.stem for b in bins], "environment": res.environment(),
            "command": cfg.command}
    train_data = targets = None
    cells = []
    for loss_name in losses:
        for backend in cfg.backends:
            cell_hash = res.config_hash({**family, "loss": loss_name, "backend": backend})
            path = res.cell_path(out_dir, loss_name, backend)
            if not cfg.force and res.is_done(out_dir, loss_name, backend, cell_hash):
                log(f"[skip] {loss_name}/{backend}: finished with this config ({path})")
                cells.append(res.read_cell(path))
                continue
            if train_data is None:
                train_data = train_images(data, cfg.image_size)
                targets = verification_sets(bins, cfg.image_size)
            if cfg.force:
                ckpt = (Path(cfg.runs) / dataset /
                        f"{loss_name.replace('+', '_plus_')}__{backend}-{cell_hash}.ckpt.npz")
                ckpt.unlink(missing_ok=True)
            runner = run_cell
            if backend == "pytorch" and cfg.nproc > 1:
                from bench.distributed import run_cell as runner
            try:
                cell = runner(cfg, dataset, loss_name, backend, train_data, targets,
                              family_hash, cell_hash)
            except Exception as exc:  # noqa: BLE001  (one broken cell must not stop the others)
                cell = {"dataset": dataset, "loss": loss_name, "backend": backend,
                        "config": _hashed(cfg), "config_hash": cell_hash,
                        "family_hash": family_hash, "status": "error",
                        "message": f"{type(exc).__name__}: {exc}", "history": None,
                        "final_eval": {}, "traceback": traceback.format_exc()}
            cell.setdefault("git_commit", res.git_commit())  # the code that trained this cell
            for target, result in cell.pop("_results", {}).items():
                res.save_result(res.result_path(out_dir, loss_name, backend, target), result)
            res.write_json(path, cell)
            cells.append(cell)
            log(_cell_line(cell))
            if cell["status"] == "ok":
                for p in (Path(cfg.runs) / dataset).glob(
                        f"{loss_name.replace('+', '_plus_')}__{backend}-*.ckpt.npz"):
                    p.unlink()
            rows = res.rows_from_cells(res.load_cells(out_dir, family_hash))
            res.write_tables(out_dir, rows, meta, f"{dataset}: margin losses, PyTorch vs Gluon")
    # once more at the end, so the tables name this command even when every cell was skipped
    rows = res.rows_from_cells(res.load_cells(out_dir, family_hash))
    if rows:
        res.write_tables(out_dir, rows, meta, f"{dataset}: margin losses, PyTorch vs Gluon")
    if cfg.plots:
        from bench import plots

        for p in plots.make_all(out_dir, res.load_cells(out_dir, family_hash)):
            log(f"[plot] {p}")
    return cells


def _cell_line(cell: dict) -> str:
    if cell["status"] != "ok":
        return f"[{cell['status']}] {cell['loss']}/{cell['backend']}: {cell['message']}"
    parts = [f"{t} acc {m['acc_mean']:.4f}+-{m['acc_std']:.4f}"
             for t, m in sorted(cell["final_eval"].items())]
    timing = cell["history"]["timing"]
    ips = timing["images"] / timing["seconds"] if timing["seconds"] else float("nan")
    return (f"[ok] {cell['loss']}/{cell['backend']}: " + ", ".join(parts)
            + f", train loss {cell['history']['epochs'][-1]['train_loss']:.4f}, {ips:.0f} img/s,"
            f" {timing['wall_seconds']:.1f} s")
