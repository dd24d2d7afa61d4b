"""The training loop both backends run, written once so that it cannot drift between them.

A backend supplies a ``Trainer`` (``pytorch_impl.train`` / ``gluon_impl.train``) with
``set_lr(lr)``, ``train_step(images, labels) -> StepOutput(loss, correct, head_seconds)``,
``embed(images)``, ``state_arrays()`` and ``load_state_arrays(arrays)``. Everything else lives
here: the epoch order and flips from ``common.sampler.EpochSampler`` (same seed, same batches in
both backends), the LR from ``common.schedule`` at every step, NaN/Inf stop, evaluation after each
epoch, checkpoint/resume and the progress bar.

Checkpoint format: one ``.npz`` holding the trainer's arrays plus ``__meta__`` (UTF-8 JSON with
the loop position and history), written to a temporary file in the same folder, fsynced and
renamed over the old one, so a kill at any instant leaves either the old or the new checkpoint.
A checkpoint is written only if every float array in it is finite.

Resume: the loop restarts at the saved (epoch, batch) and skips the batches already done; the
sampler regenerates the epoch's order from its seed, so a resumed run sees the same batches as an
uninterrupted one and, on deterministic kernels, ends with the same numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.fileio import atomic_write_bytes

META_KEY = "__meta__"


class NonFiniteError(RuntimeError):
    """The loss (or a state array) became NaN/Inf; the run stops without writing a checkpoint."""


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Atomic ``.npz`` checkpoint; raises NonFiniteError (and writes nothing) on NaN/Inf."""
    bad = sorted(k for k, v in arrays.items()
                 if np.issubdtype(np.asarray(v).dtype, np.floating)
                 and not np.all(np.isfinite(v)))
    if bad:
        raise NonFiniteError(
            f"non-finite values in {', '.join(bad[:5])}; checkpoint {path} not written")
    buf = io.BytesIO()
    payload = dict(arrays)
    payload[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    np.savez(buf, **payload)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of ``save_checkpoint``; a file without ``__meta__`` raises ValueError."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if META_KEY not in arrays:
        raise ValueError(f"{path}: not a training checkpoint (no {META_KEY} entry)")
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    return arrays, meta


STATE_PARTS = ("backbone", "loss", "momentum", "lossstate")


def split_state(arrays: dict[str, np.ndarray], expected) -> dict[str, dict[str, np.ndarray]]:
    """A trainer's checkpoint arrays by part: {"backbone": {name: array}, "loss": ...,
    "momentum": ..., "lossstate": ...}, names without the "<part>/" prefix.

    ``expected``: the keys of the trainer's own ``state_arrays()``. Every one of them except the
    momentum buffers (absent before the first step) must be present, and no backbone or loss
    array the trainer lacks may be: both raise ValueError naming up to 8 keys. Every trainer
    (both backends, single process, data- or model-parallel) loads through this.
    """
    expected = set(expected)
    missing = sorted(k for k in expected - set(arrays) if not k.startswith("momentum/"))
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} arrays: {missing[:8]}")
    parts: dict[str, dict[str, np.ndarray]] = {part: {} for part in STATE_PARTS}
    unexpected = []
    for key, value in arrays.items():
        part, _, name = key.partition("/")
        if part not in parts or (part in ("backbone", "loss") and key not in expected):
            unexpected.append(key)
        else:
            parts[part][name] = value
    if unexpected:
        raise ValueError(f"checkpoint has unexpected arrays: {sorted(unexpected)[:8]}")
    return parts


def _new_history() -> dict:
    return {
        "position": {"epoch": 0, "batch": 0, "step": 0},
        "steps": {"loss": [], "acc": [], "lr": []},
        "epochs": [],
        "timing": {"images": 0, "seconds": 0.0, "head_seconds": 0.0, "head_steps": 0,
                   "wall_seconds": 0.0},
        "finished": False,
    }


def _progress(total: int, desc: str, enabled: bool, initial: int):
    """A tqdm bar as a context manager (closed on leaving), or a null context giving None."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, mininterval=1.0,
                dynamic_ncols=True)


def fit(
    trainer,
    sampler,
    labels: np.ndarray,
    batch_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    schedule: Callable[[int], float],
    epochs: int,
    checkpoint: str | os.PathLike | None = None,
    evaluate: Callable[[Callable[[np.ndarray], np.ndarray]], dict] | None = None,
    checkpoint_every: int = 0,
    timing_warmup_steps: int = 3,
    stop_after_steps: int | None = None,
    progress: bool = True,
    desc: str = "",
) -> dict:
    """Train ``epochs`` epochs (resuming from ``checkpoint`` if it exists); return the history.

    ``batch_fn(indices, flips)`` returns the normalised float32 N x 3 x H x W batch;
    ``evaluate(embed_fn) -> {target: {metric: float}}`` runs after each epoch.
    ``checkpoint_every``: also checkpoint every that many steps (0: at epoch ends only).
    ``stop_after_steps``: stop (after checkpointing) once the global step reaches it, as if
    interrupted; the history then has ``finished = False``.
    Throughput counts the train steps only (the shared batch assembly is excluded), minus the
    first ``timing_warmup_steps`` steps of this process (graph building, allocator warm-up).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every!r}")
    run = _Run(trainer, checkpoint, timing_warmup_steps)
    per_epoch = len(sampler)
    for epoch in range(run.pos["epoch"], epochs):
        with _progress(per_epoch, f"{desc} ep {epoch + 1}/{epochs}", progress,
                       run.pos["batch"]) as bar:
            for b, (indices, flips) in enumerate(sampler.batches(epoch)):
                if b < run.pos["batch"]:  # done before the checkpoint this run resumed from
                    continue
                images = batch_fn(indices, flips)
                run.step(images, labels[indices], schedule, epoch, b, bar)
                if stop_after_steps is not None and run.pos["step"] >= stop_after_steps:
                    run.save()
                    return run.history
                if checkpoint_every and run.pos["step"] % checkpoint_every == 0 \
                        and b + 1 < per_epoch:
                    run.save()
        run.end_epoch(epoch, epochs, per_epoch, evaluate)
    run.history["finished"] = True
    return run.history


class _Run:
    """The state of one ``fit`` call: the history (what a checkpoint holds, resumed from one if
    it exists) and this process's clocks, with one method per thing the loop does."""

    def __init__(self, trainer, checkpoint, timing_warmup_steps: int):
        self.trainer, self.checkpoint = trainer, checkpoint
        self.timing_warmup_steps = timing_warmup_steps
        self.history = _new_history()
        if checkpoint is not None and Path(checkpoint).exists():
            arrays, self.history = load_checkpoint(checkpoint)
            trainer.load_state_arrays(arrays)
        self.pos = self.history["position"]
        self.timing = self.history["timing"]
        self.steps_done_here = 0
        self.started = time.perf_counter()
        self.wall_before = self.timing["wall_seconds"]

    def save(self) -> None:
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.trainer.state_arrays(), self.history)

    def _update_wall_clock(self) -> None:
        self.timing["wall_seconds"] = self.wall_before + time.perf_counter() - self.started

    def step(self, images, labels, schedule, epoch: int, b: int, bar) -> None:
        """Train on batch ``b`` of ``epoch`` at the LR of the global step, then record it;
        NonFiniteError (nothing recorded) if the loss is NaN/Inf."""
        step = self.pos["step"]
        lr = float(schedule(step))
        self.trainer.set_lr(lr)
        t0 = time.perf_counter()
        out = self.trainer.train_step(images, labels)
        seconds = time.perf_counter() - t0
        if not np.isfinite(out.loss):
            raise NonFiniteError(
                f"loss is {out.loss} at epoch {epoch + 1} batch {b + 1} (global step "
                f"{step}, lr {lr:g}); weights not updated, checkpoint not written"
            )
        self._count_time(len(labels), seconds, out.head_seconds)
        acc = self._record(out, lr, len(labels), b)
        self._update_wall_clock()
        if bar is not None:
            self._show(bar, out.loss, acc, lr)

    def _record(self, out, lr: float, batch_size: int, b: int) -> float:
        """Append the step's loss, accuracy and LR to the history and advance the position."""
        acc = out.correct / batch_size if out.correct >= 0 else float("nan")
        steps = self.history["steps"]
        steps["loss"].append(out.loss)
        steps["acc"].append(acc)
        steps["lr"].append(lr)
        self.pos.update(batch=b + 1, step=self.pos["step"] + 1)
        return acc

    def _show(self, bar, loss: float, acc: float, lr: float) -> None:
        timing = self.timing
        ips = timing["images"] / timing["seconds"] if timing["seconds"] else 0.0
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}", img_s=f"{ips:.0f}",
                        lr=f"{lr:.3g}", refresh=False)
        bar.update(1)

    def _count_time(self, images: int, seconds: float, head_seconds: float) -> None:
        """Throughput skips this process's first ``timing_warmup_steps`` steps; head time
        counts every step."""
        self.steps_done_here += 1
        if self.steps_done_here > self.timing_warmup_steps:
            self.timing["images"] += images
            self.timing["seconds"] += seconds
        self.timing["head_seconds"] += head_seconds
        self.timing["head_steps"] += 1

    def end_epoch(self, epoch: int, epochs: int, per_epoch: int, evaluate) -> None:
        """The epoch's record (mean train loss and accuracy, evaluation), then a checkpoint."""
        losses = self.history["steps"]["loss"][-per_epoch:]
        accs = self.history["steps"]["acc"][-per_epoch:]
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                  "train_acc": float(np.mean(accs)) if accs else float("nan")}
        if evaluate is not None:
            record["eval"] = evaluate(self.trainer.embed)
        self.history["epochs"].append(record)
        self.pos.update(epoch=epoch + 1, batch=0)
        self.history["finished"] = self.pos["epoch"] >= epochs
        self._update_wall_clock()
        self.save()
