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

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

META_KEY = "__meta__"


class NonFiniteError(RuntimeError):
    """The loss (or a state array) became NaN/Inf; the run stops without writing a checkpoint."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename (never a torn file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Atomic ``.npz`` checkpoint; raises NonFiniteError (and writes nothing) on NaN/Inf."""
    bad = sorted(k for k, v in arrays.items()
                 if np.issubdtype(np.asarray(v).dtype, np.floating)
                 and not np.all(np.isfinite(v)))
    if bad:
        raise NonFiniteError(
            f"non-finite values in {', '.join(bad[:5])}; checkpoint {path} not written")
    import io

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
    if not enabled:
        return None
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
    history = _new_history()
    if checkpoint is not None and Path(checkpoint).exists():
        arrays, history = load_checkpoint(checkpoint)
        trainer.load_state_arrays(arrays)

    def save():
        if checkpoint is not None:
            save_checkpoint(checkpoint, trainer.state_arrays(), history)

    pos = history["position"]
    timing = history["timing"]
    steps_done_here = 0
    started = time.perf_counter()
    wall_before = timing["wall_seconds"]
    per_epoch = len(sampler)
    for epoch in range(pos["epoch"], epochs):
        bar = _progress(per_epoch, f"{desc} ep {epoch + 1}/{epochs}", progress, pos["batch"])
        for b, (indices, flips) in enumerate(sampler.batches(epoch)):
            if b < pos["batch"]:
                continue
            step = pos["step"]
            images = batch_fn(indices, flips)
            lr = float(schedule(step))
            trainer.set_lr(lr)
            t0 = time.perf_counter()
            out = trainer.train_step(images, labels[indices])
            dt = time.perf_counter() - t0
            if not np.isfinite(out.loss):
                if bar is not None:
                    bar.close()
                raise NonFiniteError(
                    f"loss is {out.loss} at epoch {epoch + 1} batch {b + 1} (global step "
                    f"{step}, lr {lr:g}); weights not updated, checkpoint not written"
                )
            steps_done_here += 1
            if steps_done_here > timing_warmup_steps:
                timing["images"] += len(indices)
                timing["seconds"] += dt
            timing["head_seconds"] += out.head_seconds
            timing["head_steps"] += 1
            acc = out.correct / len(indices) if out.correct >= 0 else float("nan")
            history["steps"]["loss"].append(out.loss)
            history["steps"]["acc"].append(acc)
            history["steps"]["lr"].append(lr)
            pos.update(batch=b + 1, step=step + 1)
            timing["wall_seconds"] = wall_before + time.perf_counter() - started
            if bar is not None:
                ips = timing["images"] / timing["seconds"] if timing["seconds"] else 0.0
                bar.set_postfix(loss=f"{out.loss:.3f}", acc=f"{acc:.3f}", img_s=f"{ips:.0f}",
                                lr=f"{lr:.3g}", refresh=False)
                bar.update(1)
            if stop_after_steps is not None and pos["step"] >= stop_after_steps:
                if bar is not None:
                    bar.close()
                save()
                return history
            if checkpoint_every and pos["step"] % checkpoint_every == 0 and b + 1 < per_epoch:
                save()
        if bar is not None:
            bar.close()
        losses = history["steps"]["loss"][-per_epoch:]
        accs = history["steps"]["acc"][-per_epoch:]
        record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                  "train_acc": float(np.mean(accs)) if accs else float("nan")}
        if evaluate is not None:
            record["eval"] = evaluate(trainer.embed)
        history["epochs"].append(record)
        pos.update(epoch=epoch + 1, batch=0)
        history["finished"] = pos["epoch"] >= epochs
        timing["wall_seconds"] = wall_before + time.perf_counter() - started
        save()
    history["finished"] = True
    return history
