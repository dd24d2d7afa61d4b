"""One cell (loss, backend), written once for the single-process and the multi-process path.

A cell starts from the PyTorch modules built under ``torch.manual_seed(seed)``; the Gluon cell
receives those very numbers via ``transfer`` and ``load_loss_state``, so both start from the
same weights. Both train with ``common.trainloop.fit`` on the same ``EpochSampler`` batches and
flips and the same learning-rate schedule; each epoch ends with the verification protocol on
every ``.bin``, and the final evaluation keeps the ROC curve. The multi-process path
(``bench.run.distributed``) changes only the trainer and the sampler it hands to ``train``.
A finished cell's record carries its model (``_model``: backbone parameters and loss head
state, ``bench.run.export.cell_model``), which the harness exports and drops.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.report import results as res
from bench.run import export, loss_settings
from bench.run.config import HarnessConfig, hashed
from common import backends
from common.images import make_batch
from common.sampler import EpochSampler, StepBudget
from common.schedule import LRSchedule, build_schedule
from common.trainloop import NonFiniteError, fit


def new_record(cfg: HarnessConfig, dataset: str, loss_name: str, backend: str,
               family_hash: str, cell_hash: str, targets, **extra) -> dict:
    """The cell record before training: what the cell is (the one place its keys are named).

    ``loss_name`` is the cell's loss label (``arcface`` or ``arcface[margin=0.3]``); a label
    with settings also records them apart (``loss_args``).
    """
    settings = loss_settings.split(loss_name)[1]
    return {"dataset": dataset, "loss": loss_name, "backend": backend, "config": hashed(cfg),
            "config_hash": cell_hash, "family_hash": family_hash, "targets": sorted(targets),
            **({"loss_args": settings} if settings else {}), **extra}


def checkpoint_path(cfg: HarnessConfig, dataset: str, loss_name: str, backend: str,
                    cell_hash: str, nproc: int = 1, rank: int = 0) -> Path:
    """Where a cell's resume checkpoint lives; a multi-process cell has one per rank."""
    stem = f"{res.cell_stem(loss_name, backend)}-{cell_hash}"
    if nproc > 1:
        stem += f".nproc{nproc}.rank{rank}"
    return Path(cfg.runs) / dataset / f"{stem}.ckpt.npz"


def remove_checkpoints(cfg: HarnessConfig, dataset: str, loss_name: str, backend: str,
                       cell_hash: str) -> None:
    """The checkpoints of this cell (every process count; the cell is finished), never those
    of another configuration of the same loss and backend in a shared runs folder."""
    stem = f"{res.cell_stem(loss_name, backend)}-{cell_hash}"
    for p in (Path(cfg.runs) / dataset).glob(f"{stem}.ckpt.npz"):
        p.unlink(missing_ok=True)
    for p in (Path(cfg.runs) / dataset).glob(f"{stem}.nproc*.rank*.ckpt.npz"):
        p.unlink(missing_ok=True)


def build_loss(impl, loss_name: str, num_classes: int, embedding_size: int):
    """The loss of a label (``arcface[margin=0.3]``: ArcFace with that margin) in a backend."""
    name, settings = loss_settings.split(loss_name)
    return impl.losses.build_loss(name, num_classes=num_classes,
                                  embedding_size=embedding_size, **settings)


def initial_state(cfg: HarnessConfig, loss_name: str, num_classes: int) -> tuple[dict, dict]:
    """The starting weights of a cell: PyTorch modules built under ``manual_seed(seed)``."""
    import torch

    torch_impl = backends.load("pytorch")
    torch.manual_seed(cfg.seed)
    net = torch_impl.backbones.build_backbone(cfg.backbone, embedding_size=cfg.embedding_size,
                                              image_size=cfg.image_size, **cfg.backbone_kwargs)
    loss = build_loss(torch_impl, loss_name, num_classes, cfg.embedding_size)
    return torch_impl.transfer.export_params(net), torch_impl.losses.loss_state(loss)


def build_trainer(backend: str, cfg: HarnessConfig, loss_name: str, num_classes: int,
                  params: dict, lstate: dict):
    """A backend's Trainer whose backbone and loss hold exactly ``params`` and ``lstate``."""
    impl = backends.load(backend)
    net = impl.backbones.build_backbone(cfg.backbone, embedding_size=cfg.embedding_size,
                                        image_size=cfg.image_size, **cfg.backbone_kwargs)
    loss = build_loss(impl, loss_name, num_classes, cfg.embedding_size)
    impl.transfer.import_params(net, params)
    impl.losses.load_loss_state(loss, lstate)
    return impl.train.Trainer(net, loss, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                              hybridize=cfg.hybridize, decay_all=cfg.decay_all)


def epoch_sampler(cfg: HarnessConfig, loss, labels) -> EpochSampler:
    """The batches of a cell: P x K batches for the losses that need them."""
    pk = cfg.pk if getattr(loss, "requires_pk_batches", False) else None
    return EpochSampler(labels, cfg.batch_size, cfg.seed, pk=pk)


def run_length(cfg: HarnessConfig, sampler) -> tuple:
    """``(sampler, epochs, schedule)`` of a cell: ``epochs`` passes over the data, or with
    ``steps`` exactly that many batches as one epoch (``StepBudget``), the schedule spread over
    them and the warm-up still ``warmup_epochs`` passes over the data (at most the budget)."""
    if not cfg.steps:
        return sampler, cfg.epochs, build_schedule(cfg.schedule, cfg.lr, cfg.epochs,
                                                   len(sampler),
                                                   warmup_epochs=cfg.warmup_epochs)
    warmup = min(int(round(cfg.warmup_epochs * len(sampler))), cfg.steps)
    return StepBudget(sampler, cfg.steps), 1, LRSchedule(cfg.lr, cfg.steps, warmup,
                                                         mode=cfg.schedule)


def summary(result) -> dict:
    """The scalars of a ``VerificationResult`` that a cell record and its tables keep."""
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
        return {name: summary(r) for name, r in full.items()}

    return evaluate, last_full


def train(cfg: HarnessConfig, record: dict, trainer, sampler, data: tuple, targets: dict,
          ckpt: Path, desc: str, lead: bool = True) -> dict:
    """Train and evaluate ``trainer`` on ``sampler``'s batches; completes and returns ``record``.

    ``lead``: this process evaluates and reports (False on the other ranks of a multi-process
    cell, which train their slice of every batch). A NaN/Inf loss ends the cell with status
    ``nonfinite``; it never raises.
    """
    images, labels, _ = data
    sampler, epochs, schedule = run_length(cfg, sampler)
    evaluate, last_full = make_evaluator(cfg, targets)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        history = fit(trainer, sampler, labels, lambda idx, flips: make_batch(images[idx], flips),
                      schedule, epochs, checkpoint=ckpt,
                      evaluate=evaluate if lead else None,
                      checkpoint_every=cfg.checkpoint_every, progress=cfg.progress and lead,
                      desc=desc)
    except NonFiniteError as exc:
        record.update(status="nonfinite", message=str(exc), history=None, final_eval={})
        return record
    if lead and not last_full:  # the checkpoint was already final: evaluate the restored weights
        evaluate(trainer.embed)
    record.update(status="ok", message="", history=history,
                  final_eval={name: summary(r) for name, r in last_full.items()},
                  cell_seconds=time.perf_counter() - started)
    # the full VerificationResult objects (ROC, distances) go to .npz beside the cell JSON
    record["_results"] = dict(last_full)
    return record


def run_cell(cfg: HarnessConfig, dataset: str, loss_name: str, backend: str,
             data: tuple, targets: dict, family_hash: str, cell_hash: str) -> dict:
    """Train and evaluate one (loss, backend) in this process; returns the cell record."""
    record = new_record(cfg, dataset, loss_name, backend, family_hash, cell_hash, targets)
    params, lstate = initial_state(cfg, loss_name, data[2])
    trainer = build_trainer(backend, cfg, loss_name, data[2], params, lstate)
    sampler = epoch_sampler(cfg, trainer.loss, data[1])
    ckpt = checkpoint_path(cfg, dataset, loss_name, backend, cell_hash)
    record = train(cfg, record, trainer, sampler, data, targets, ckpt, f"{loss_name}/{backend}")
    if record["status"] == "ok":  # the harness exports it (bench.run.export.write_cell_model)
        impl = backends.load(backend)
        record["_model"] = export.cell_model(backend, trainer.backbone,
                                             impl.losses.loss_state(trainer.loss), data[2])
    return record
