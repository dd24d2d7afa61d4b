"""The classic feature-space figure: each loss trained with a 2-D (or 3-D) embedding.

As in the SphereFace, CosFace, ArcFace and Center-loss papers: a few identities, a network whose
embedding has 2 (or 3) dimensions, trained with each loss; the learned features of the training
images are scattered per class. 2-D: raw features (the angular spread of margin losses and the
compact clusters of centre loss show directly). 3-D: features L2-normalised onto the unit sphere
(the hypersphere view of NormFace/ArcFace), drawn as an orthographic projection.

Both backends are trained from the same initial weights on the same batches (the harness's
``initial_state``/``build_trainer``/``fit``), one panel per (loss, backend) side by side.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from bench.run import cell, harness
from bench.run.config import HarnessConfig
from bench.run.data import train_images
from common.fileio import atomic_write_bytes
from common.images import make_batch, normalize
from common.schedule import build_schedule
from common.trainloop import NonFiniteError, fit


def subset(images: np.ndarray, labels: np.ndarray, identities: int):
    """The images of the first ``identities`` labels, relabelled 0..identities-1."""
    keep = labels < identities
    if len(np.unique(labels[keep])) < identities:
        raise ValueError(f"identities must be <= the data set's {len(np.unique(labels))} "
                         f"identities, got {identities}")
    return images[keep], labels[keep]


def train_features(cfg: HarnessConfig, loss_name: str, backend: str,
                   images: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Train one (loss, backend) and return the training images' embeddings (None on NaN)."""
    classes = int(labels.max()) + 1
    params, lstate = cell.initial_state(cfg, loss_name, classes)
    trainer = cell.build_trainer(backend, cfg, loss_name, classes, params, lstate)
    sampler = cell.epoch_sampler(cfg, trainer.loss, labels)
    schedule = build_schedule(cfg.schedule, cfg.lr, cfg.epochs, len(sampler),
                              warmup_epochs=cfg.warmup_epochs)
    try:
        fit(trainer, sampler, labels, lambda i, f: make_batch(images[i], f), schedule,
            cfg.epochs, progress=cfg.progress, desc=f"{loss_name}/{backend} {cfg.embedding_size}d")
    except NonFiniteError:
        return None
    return np.concatenate([trainer.embed(normalize(images[i:i + 256]))
                           for i in range(0, len(images), 256)])


def _panel(fig, rows, cols, index, feats, labels, dim, title):
    cmap = "tab10" if labels.max() < 10 else "tab20"
    if feats is None:
        ax = fig.add_subplot(rows, cols, index)
        ax.text(0.5, 0.5, "diverged (NaN)", ha="center", va="center")
        ax.set_axis_off()
    elif dim == 2:
        ax = fig.add_subplot(rows, cols, index)
        ax.scatter(feats[:, 0], feats[:, 1], c=labels, cmap=cmap, s=5, vmin=0,
                   vmax=max(labels.max(), 1))
        ax.set_aspect("equal", adjustable="datalim")
        ax.axhline(0, lw=0.3, c="grey")
        ax.axvline(0, lw=0.3, c="grey")
    else:
        ax = fig.add_subplot(rows, cols, index, projection="3d")
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        u, v = np.mgrid[0:2 * np.pi:24j, 0:np.pi:12j]
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), lw=0.2,
                          color="lightgrey")
        ax.scatter(unit[:, 0], unit[:, 1], unit[:, 2], c=labels, cmap=cmap, s=4, vmin=0,
                   vmax=max(labels.max(), 1), depthshade=False)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_zticks([])
    ax.set_title(title, fontsize="small")


def figure(results: dict, labels: np.ndarray, dim: int, backends):
    """results: {(loss, backend): features or None}; one panel per (loss, backend)."""
    from matplotlib.figure import Figure

    losses = list(dict.fromkeys(loss for loss, _ in results))
    per_row = 2 if len(backends) == 2 else 4
    cols = per_row * len(backends) if len(backends) == 2 else per_row
    rows = math.ceil(len(losses) * len(backends) / cols)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows), layout="constrained")
    i = 0
    for loss in losses:
        for backend in backends:
            i += 1
            _panel(fig, rows, cols, i, results[(loss, backend)], labels, dim,
                   f"{loss} ({backend})")
    kind = "2-D features" if dim == 2 else "3-D features, L2-normalised"
    fig.suptitle(f"{kind} of {labels.max() + 1} training identities, per loss and backend")
    return fig


def run(cfg: HarnessConfig, identities: int, dims=(2, 3), out_dir: Path | None = None,
        log=print) -> list[Path]:
    """Train every (dim, loss, backend), write features_<dim>d.png; returns the paths."""
    data, _, losses = harness.preflight(cfg)
    images, labels, _ = train_images(data, cfg.image_size)
    images, labels = subset(images, labels, identities)
    out_dir = Path(out_dir or Path(cfg.results) / data.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dim in dims:
        dcfg = dataclasses.replace(cfg, embedding_size=dim)
        results = {}
        for loss in losses:
            for backend in cfg.backends:
                results[(loss, backend)] = train_features(dcfg, loss, backend, images, labels)
                log(f"[features {dim}d] {loss}/{backend}"
                    + (" diverged" if results[(loss, backend)] is None else ""))
        buf = io.BytesIO()
        figure(results, labels, dim, cfg.backends).savefig(buf, format="png", dpi=100)
        path = out_dir / f"features_{dim}d.png"
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written
