"""Exported models: the framework-neutral folder format, and every finished cell's model.

Format (``docs/ARCHITECTURE.md``, "Exported models"): ``DIR/model.npz`` holds the backbone's
parameters under the canonical names of ``transfer.export_params`` (the PyTorch ``state_dict``
keys), ``DIR/model.json`` the architecture (``backbone``, ``backbone_kwargs``,
``embedding_size``, ``image_size``, ``raw_input``) and where the numbers came from; either
backend rebuilds the backbone (``build_from_exported``). ``python -m bench import-model``
writes such folders from InsightFace checkpoints; the harness writes one per finished cell to
``<models>/<data set>/<cell stem>/``, with the loss head's state in ``head.npz`` as well
(``loss_state`` names: ``weight``, ``centers``, ...; ``build_head_from_exported``) for
resuming or fine-tuning.

Writing is crash-safe (``write_exported``): ``model.json`` is removed first and written last,
each file atomically (``common.fileio.atomic_write_bytes``), so a folder that holds a
``model.json`` is complete; a kill half-way leaves one without it, which ``read_exported``
refuses. A missing or mismatched array is a one-line ``ValueError`` naming the file and the
array.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from bench.report import results as res
from bench.run import loss_settings
from bench.run.config import HarnessConfig, hashed
from common import backends, manifest
from common.fileio import atomic_write_bytes

PARAMS_FILE, HEAD_FILE, META_FILE = "model.npz", "head.npz", "model.json"
FORMAT = "facelosses-model"
FORMAT_VERSION = 1
# what the harness feeds every backbone: common.images.normalize (RGB, NCHW, float32)
HARNESS_INPUT = {"layout": "NCHW", "channels": "RGB", "dtype": "float32",
                 "normalize": "(x/255-0.5)/0.5", "by": "common.images.normalize"}
BACKENDS = {"torch": "torch", "pytorch": "torch", "gluon": "gluon"}


class ExportedArrays(dict):
    """``{name: ndarray}`` read from an exported folder; ``source`` is the file it came from
    (errors about its arrays name it)."""

    source: str = ""


# ---- the format -------------------------------------------------------------------------------

def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_exported(out, params: dict, meta: dict, extra: dict | None = None) -> Path:
    """``out/model.npz`` (canonical params) + ``out/model.json`` (meta: backbone, sizes,
    kwargs), plus ``extra`` ``{file name: {name: array}}`` (``head.npz``), crash-safe: the old
    ``model.json`` goes first, every file is written atomically, the new ``model.json`` last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)
    _fsync_dir(out)
    atomic_write_bytes(out / PARAMS_FILE, _npz_bytes(params))
    for name, arrays in (extra or {}).items():
        if name in (PARAMS_FILE, META_FILE):
            raise ValueError(f"write_exported: extra file name {name!r} is reserved")
        atomic_write_bytes(out / name, _npz_bytes(arrays))
    atomic_write_bytes(out / META_FILE, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    _fsync_dir(out)
    return out


def read_arrays(path) -> ExportedArrays:
    """The arrays of one ``.npz`` of an exported folder; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            out = ExportedArrays((k, npz[k]) for k in npz.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz of arrays ({exc})") from None
    out.source = str(path)
    return out


def read_meta(path) -> dict:
    """``model.json`` of an exported folder; errors name the file or the missing key."""
    path = Path(path)
    if not (path / META_FILE).is_file():
        raise FileNotFoundError(f"exported model file not found: {path / META_FILE}")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except ValueError as exc:
        raise ValueError(f"{path / META_FILE}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path / META_FILE}: expected a JSON object")
    for key in ("backbone", "embedding_size", "image_size"):
        if key not in meta:
            raise ValueError(f"{path / META_FILE}: missing key {key!r}")
    return meta


def read_exported(path) -> tuple[dict, dict]:
    """(params, meta) of an exported model folder; errors name the missing file or key."""
    path = Path(path)
    for name in (META_FILE, PARAMS_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"exported model file not found: {path / name}")
    meta = read_meta(path)
    return read_arrays(path / PARAMS_FILE), meta


def read_head(path) -> tuple[dict, dict]:
    """(loss head state, meta) of a folder the harness exported (``head.npz``)."""
    path = Path(path)
    meta = read_meta(path)
    for key in ("loss_name", "num_classes", "loss_hyperparameters"):
        if key not in meta:
            raise ValueError(f"{path / META_FILE}: missing key {key!r} (not a harness cell's "
                             "model: no loss head)")
    return read_arrays(path / meta.get("files", {}).get("head", HEAD_FILE)), meta


def _backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'torch' (or 'pytorch') or 'gluon', got {backend!r}")
    return BACKENDS[backend]


def _impl(backend: str):
    return backends.load("pytorch" if _backend(backend) == "torch" else "gluon")


def _source(arrays, source, default: str) -> str:
    return str(source or getattr(arrays, "source", "") or default)


def build_from_exported(params: dict, meta: dict, backend: str, source=None):
    """Our ``backend`` ('torch'/'pytorch' or 'gluon') backbone with the exported parameters,
    eval-ready; a missing, unexpected or mis-shaped array is a ``ValueError`` naming the file
    (``source``, else the file ``read_exported`` read) and the array."""
    impl = _impl(backend)
    model = impl.backbones.build_backbone(
        meta["backbone"], embedding_size=int(meta["embedding_size"]),
        image_size=int(meta["image_size"]), **dict(meta.get("backbone_kwargs", {})))
    try:
        impl.transfer.import_params(model, params)
    except ValueError as exc:
        raise ValueError(f"{_source(params, source, PARAMS_FILE)}: {exc}") from None
    if _backend(backend) == "torch":
        model.eval()
    return model


def build_head_from_exported(head: dict, meta: dict, backend: str, source=None):
    """The cell's loss (``meta['loss_name']`` with its hyper-parameters, for ``num_classes``)
    in ``backend``, holding the exported state ``head``; errors name the file and the array."""
    impl = _impl(backend)
    loss = impl.losses.build_loss(meta["loss_name"], num_classes=int(meta["num_classes"]),
                                  embedding_size=int(meta["embedding_size"]),
                                  **meta.get("loss_hyperparameters", {}))
    try:
        impl.losses.load_loss_state(loss, head)
    except ValueError as exc:
        raise ValueError(f"{_source(head, source, HEAD_FILE)}: {exc}") from None
    return loss


# ---- the harness's cells ----------------------------------------------------------------------

def model_dir(cfg: HarnessConfig, dataset: str, loss_name: str, backend: str) -> Path:
    """Where a cell's model goes: ``<models>/<data set>/<cell stem>/``."""
    return Path(cfg.models) / dataset / res.cell_stem(loss_name, backend)


def cell_model(backend: str, backbone, loss_state: dict, num_classes: int) -> dict:
    """What a finished cell hands the harness to export (``record["_model"]``): the backbone's
    canonical parameters and the loss head's full state, as numpy arrays (picklable)."""
    impl = backends.load(backend)
    return {"params": impl.transfer.export_params(backbone), "head": dict(loss_state),
            "raw_input": bool(getattr(backbone, "raw_input", False)),
            "num_classes": int(num_classes)}


def cell_meta(cfg: HarnessConfig, record: dict, model: dict, data_fingerprint: dict) -> dict:
    """``model.json`` of a cell: the import-model keys, then the loss, data, seed and code."""
    name, settings = loss_settings.split(record["loss"])
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "backbone": cfg.backbone, "backbone_kwargs": dict(cfg.backbone_kwargs),
        "embedding_size": cfg.embedding_size, "image_size": cfg.image_size,
        "raw_input": bool(model["raw_input"]), "input": dict(HARNESS_INPUT),
        "backend": record["backend"],
        "loss": record["loss"], "loss_name": name, "loss_args": dict(settings),
        "loss_hyperparameters": {**manifest.loss_hyperparameters(name), **settings},
        "num_classes": int(model["num_classes"]),
        "dataset": record["dataset"], "data_fingerprint": data_fingerprint,
        "seed": cfg.seed, "git_commit": record.get("git_commit") or res.git_commit(),
        "config": hashed(cfg), "config_hash": record["config_hash"],
        "family_hash": record["family_hash"], "flip_test": cfg.flip_test,
        "final_eval": record.get("final_eval", {}),
        "files": {"params": PARAMS_FILE, "head": HEAD_FILE},
    }


def models_folder(models: Path, folder: str, config: dict) -> str:
    """The folder name under ``models`` for a run of ``config`` (``hashed(cfg)``): ``folder``
    when it holds no model or models of this config, else ``folder@<config hash>`` beside it,
    so that a run never overwrites another configuration's models (two ``bench real`` runs
    with other ``--results`` share the default ``--models``)."""
    held = []
    for path in sorted((Path(models) / folder).glob(f"*/{META_FILE}")):
        try:
            held.append(json.loads(path.read_text()).get("config"))
        except (OSError, ValueError):
            continue
    if not held or config in held:
        return folder
    return f"{folder}@{res.config_hash(config)}"


def write_cell_model(cfg: HarnessConfig, record: dict, model: dict,
                     data_fingerprint: dict, folder: str | None = None) -> Path:
    """Export a finished cell: ``model.npz``, ``head.npz`` and ``model.json`` (last), to
    ``<models>/<folder>/<cell stem>/`` (``folder``: the results folder's name, by default
    the data set's)."""
    out = model_dir(cfg, folder or record["dataset"], record["loss"], record["backend"])
    meta = cell_meta(cfg, record, model, data_fingerprint)
    return write_exported(out, model["params"], meta, extra={HEAD_FILE: model["head"]})
