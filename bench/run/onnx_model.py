"""ONNX files of an exported model: written by both frameworks' exporters, run by onnxruntime.

``export(folder, sources, opset, out)`` (``python -m bench export DIR --onnx``) rebuilds the
exported model (``bench.run.export``) and writes, into the model folder or ``out``:

- ``model.torch.onnx``: our PyTorch backbone through ``torch.onnx.export``
  (``pytorch_impl/onnx_export.py``);
- ``model.mxnet.onnx``: our Gluon backbone, hybridised, through MXNet's ``mx.onnx`` converter
  (``gluon_impl/onnx_export.py``);
- ``model.checkpoint.onnx`` (``--from checkpoint``, for ``import-model``'s folders): the MXNet
  checkpoint as published, through the same converter;
- ``onnx.json`` (written last): the input (name, shape, layout, the normalisation the caller
  applies), the output, per file its exporter, opset, IR version, sha256, the fixes the
  exporter needed and the check below; the package versions, the commit and the command.

Every graph takes ``data``, float32 N x 3 x H x W (N dynamic), and gives ``embedding``,
N x D, not normalised. Each file is checked before anything is written: onnxruntime runs it
on random inputs and its L2-normalised embeddings must equal its source's (the PyTorch model,
the Gluon model, MXNet's own Module) within ``CHECK_TOLERANCE``; a failure writes nothing.
Files are written atomically, and an existing ``onnx.json`` keeps the entries of the files
this run did not rewrite.

``OnnxEmbedder`` is the other side (``bench eval --backend onnx``): an ``.onnx`` checked to
be an embedding model (one float input N x 3 x H x W, one output N x D) and run with
onnxruntime's CPU provider; anything else is a one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from bench.report.results import git_commit
from bench.run.export import META_FILE, build_from_exported, read_exported, read_meta
from common.fileio import atomic_write_bytes

ONNX_META = "onnx.json"
FORMAT = "facelosses-onnx"
FORMAT_VERSION = 1
# --from name -> (file written, what eval calls it: "onnx-<tag>")
SOURCES = {"torch": "model.torch.onnx", "gluon": "model.mxnet.onnx",
           "checkpoint": "model.checkpoint.onnx"}
DEFAULT_SOURCES = ("torch", "gluon")
# MXNet's converter starts at opset 12; torch's TorchScript exporter ends at 20
DEFAULT_OPSET, MIN_OPSET, MAX_OPSET = 17, 12, 20
CHECK_TOLERANCE = 1e-4  # max abs diff of L2-normalised embeddings, ONNX vs its source
INPUT_NAME, OUTPUT_NAME = "data", "embedding"
RAW_INPUT = "none: raw RGB 0..255 (the graph normalises inside)"


# ---- framework-free checks (bench export's and bench eval's check) ----------------------------

def require_packages(what: str) -> None:
    """A clear error when onnx or onnxruntime is missing (found without importing them)."""
    missing = [p for p in ("onnx", "onnxruntime") if find_spec(p) is None]
    if missing:
        raise ValueError(f"{what} needs the package(s) {', '.join(missing)}: "
                         "pip install -r requirements.txt -c constraints.txt")


def parse_sources(spec: str) -> list[str]:
    """``--from torch,gluon[,checkpoint]`` -> the names, in the given order, once each."""
    names = [s.strip() for s in str(spec).split(",")]
    bad = [n for n in names if n not in SOURCES]
    if bad or not names:
        raise ValueError(f"--from must be a comma-separated list of {', '.join(SOURCES)}, "
                         f"got {spec!r}")
    return list(dict.fromkeys(names))


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ValueError(f"--opset must be in [{MIN_OPSET}, {MAX_OPSET}] (MXNet's converter "
                         f"starts at {MIN_OPSET}, torch's TorchScript exporter ends at "
                         f"{MAX_OPSET}), got {opset}")
    return int(opset)


def checkpoint_source(folder, meta: dict) -> tuple[str, int]:
    """(prefix, epoch) of the MXNet checkpoint an ``import-model`` folder came from."""
    source = meta.get("source") if isinstance(meta.get("source"), dict) else {}
    symbol = str(source.get("symbol", ""))
    if not symbol.endswith("-symbol.json"):
        raise ValueError(f"--from checkpoint: {Path(folder) / META_FILE} names no MXNet "
                         "checkpoint (only import-model's folders have one)")
    prefix, epoch = symbol[:-len("-symbol.json")], int(source.get("epoch", 0))
    for path in (symbol, f"{prefix}-{epoch:04d}.params"):
        if not Path(path).is_file():
            raise FileNotFoundError(f"--from checkpoint: {path} (named in "
                                    f"{Path(folder) / META_FILE}) does not exist")
    return prefix, epoch


def input_spec(meta: dict, source=None) -> dict:
    """onnx.json's ``input``: name, shape, layout and the normalisation the caller applies;
    the size and normalisation are checked here (``source`` names the model.json)."""
    where = source or META_FILE
    size = meta.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{where}: image_size must be a positive integer, got {size!r}")
    raw = meta.get("raw_input", False)
    if not isinstance(raw, bool):
        raise ValueError(f"{where}: raw_input must be true or false, got {raw!r}")
    declared = meta.get("input", {}).get("normalize") if isinstance(meta.get("input"), dict) \
        else None
    if not raw and declared not in (None, "(x/255-0.5)/0.5"):
        raise ValueError(f"{where}: input normalisation {declared!r} is not one the bench "
                         "knows ((x/255-0.5)/0.5, or raw_input)")
    return {"name": INPUT_NAME, "shape": ["N", 3, size, size], "dtype": "float32",
            "layout": "NCHW", "channels": "RGB",
            "normalize": RAW_INPUT if raw else "(x/255-0.5)/0.5", "raw_input": raw}


def onnx_label(path) -> str:
    """What ``bench eval`` calls an .onnx: ``model.<tag>.onnx`` -> ``onnx-<tag>``, else
    ``onnx-<stem>``."""
    name = Path(path).name
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "model" and parts[2] == "onnx":
        return f"onnx-{parts[1]}"
    return f"onnx-{Path(path).stem}"


def folder_onnx_files(folder) -> list[Path]:
    """The .onnx files of a folder: ours in the order torch, mxnet, checkpoint, then others."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.onnx") if p.is_file())
    order = {name: i for i, name in enumerate(SOURCES.values())}
    return sorted(files, key=lambda p: (order.get(p.name, len(order)), p.name))


def resolve_onnx(spec: str) -> list[Path]:
    """``--onnx SPEC``: an .onnx file, a comma-separated list of them, or a folder (its .onnx
    files); each must exist. Framework-free."""
    items = [s.strip() for s in str(spec).split(",")]
    if not all(items):
        raise ValueError(f"--onnx {spec}: an empty name between commas")
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = folder_onnx_files(path)
            if not found:
                raise FileNotFoundError(f"--onnx: no .onnx file in {path}")
            paths += found
        elif not path.is_file():
            raise FileNotFoundError(f"--onnx: {path} does not exist")
        else:
            paths.append(path)
    out, labels = [], {}
    for path in paths:
        if path.resolve() in {p.resolve() for p in out}:
            continue
        label = onnx_label(path)
        if label in labels:
            raise ValueError(f"--onnx: {labels[label]} and {path} would both be {label!r}")
        labels[label] = path
        out.append(path)
    return out


def onnx_meta_for(path) -> dict | None:
    """What is known about an .onnx's input from its folder: the ``onnx.json`` that lists it
    (else the folder's ``model.json``): backbone, embedding_size, image_size, raw_input."""
    path = Path(path)
    meta_path = path.parent / ONNX_META
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise ValueError(f"{meta_path}: not valid JSON ({exc})") from None
        if isinstance(meta, dict) and path.name in meta.get("files", {}):
            return {k: meta[k] for k in ("backbone", "embedding_size", "image_size", "raw_input")
                    if k in meta}
    if (path.parent / META_FILE).is_file():
        meta = read_meta(path.parent)
        return {"backbone": meta["backbone"], "embedding_size": meta["embedding_size"],
                "image_size": meta["image_size"], "raw_input": bool(meta.get("raw_input"))}
    return None


# ---- onnxruntime ------------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class OnnxEmbedder:
    """An .onnx (path or bytes) as embed_fn: float32 N x 3 x H x W -> N x D, onnxruntime CPU.

    The model is checked on load to be an embedding model: one float input of rank 4 with 3
    channels (H = W = ``image_size`` where given), one output of rank 2 (D =
    ``embedding_size`` where given), and a probe batch gives one row per image. A batch axis
    fixed in the graph is honoured by running chunks of that size. Errors are one-line
    ``ValueError``s naming the file (``name``) and what is wrong.
    """

    def __init__(self, source, name: str, image_size: int | None = None,
                 embedding_size: int | None = None, threads: int = 1):
        import onnxruntime as ort

        self.name = str(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the checks below say what is wrong
        data = source if isinstance(source, bytes) else str(source)
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes, one per failure kind
            raise ValueError(f"{self.name}: not a readable ONNX model ({_first_line(exc)})") \
                from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        what = f"{self.name}: not an embedding model:"
        if len(inputs) != 1:
            raise ValueError(f"{what} {len(inputs)} inputs "
                             f"({', '.join(i.name for i in inputs)}), expected one image batch "
                             "N x 3 x H x W")
        if len(outputs) != 1:
            raise ValueError(f"{what} {len(outputs)} outputs "
                             f"({', '.join(o.name for o in outputs)}), expected one N x D")
        (inp,), (out,) = inputs, outputs
        shape = list(inp.shape)
        if inp.type != "tensor(float)":
            raise ValueError(f"{what} input {inp.name!r} is {inp.type}, expected tensor(float)")
        if len(shape) != 4:
            raise ValueError(f"{what} input {inp.name!r} has rank {len(shape)} ({shape}), "
                             "expected 4 (N x 3 x H x W)")
        if isinstance(shape[1], int) and shape[1] != 3:
            raise ValueError(f"{what} input {inp.name!r} has {shape[1]} channels ({shape}), "
                             "expected 3 (RGB)")
        size = image_size
        for axis in (2, 3):
            dim = shape[axis]
            if isinstance(dim, int) and size is not None and dim != size:
                raise ValueError(f"{what} input {inp.name!r} is {shape}, the model takes "
                                 f"{size}x{size} images")
            if size is None:
                if not isinstance(dim, int):
                    raise ValueError(f"{what} input {inp.name!r} is {shape}: its image size is "
                                     "not fixed in the graph; give it an onnx.json or "
                                     "model.json beside it")
                size = dim
        if len(out.shape) != 2:
            raise ValueError(f"{what} output {out.name!r} has rank {len(out.shape)} "
                             f"({list(out.shape)}), expected 2 (N x D)")
        dim = out.shape[1]
        if isinstance(dim, int) and embedding_size is not None and dim != embedding_size:
            raise ValueError(f"{what} output {out.name!r} is {list(out.shape)}, the model's "
                             f"embedding size is {embedding_size}")
        self.input_name, self.output_name = inp.name, out.name
        self.image_size = int(size)
        self.batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        probe = self.batch or 2
        try:
            got = self._run(np.zeros((probe, 3, self.image_size, self.image_size), np.float32))
        except Exception as exc:  # a graph that loads but cannot run this input
            raise ValueError(f"{what} it fails on a {probe} x 3 x {self.image_size} x "
                             f"{self.image_size} batch ({_first_line(exc)})") from None
        if got.ndim != 2 or got.shape[0] != probe:
            raise ValueError(f"{what} a batch of {probe} images gives an output of shape "
                             f"{list(got.shape)}, expected {probe} x D")
        self.embedding_size = int(got.shape[1])
        if embedding_size is not None and self.embedding_size != embedding_size:
            raise ValueError(f"{what} it gives {self.embedding_size}-d embeddings, the model's "
                             f"embedding size is {embedding_size}")

    def _run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.batch is None:
            return self._run(x)
        out = []
        for start in range(0, len(x), self.batch):
            chunk = x[start:start + self.batch]
            padded = np.zeros((self.batch,) + x.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            out.append(self._run(padded)[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, self.embedding_size), np.float32)


# ---- export -----------------------------------------------------------------------------------

def _normalised(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in ("numpy", "torch", "mxnet", "onnx", "onnxruntime"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = None
    return out


def _check_inputs(meta: dict, n: int) -> np.ndarray:
    """``n`` random images in the model's input convention (raw pixels or normalised)."""
    size = int(meta["image_size"])
    x = np.random.RandomState(0).randint(0, 256, (n, 3, size, size)).astype(np.float32)
    return x if meta.get("raw_input") else (x / 255 - 0.5) / 0.5


def _export_one(source: str, folder: Path, params: dict, meta: dict, opset: int):
    """(onnx bytes, notes, exporter, the source's own embed function)."""
    size = int(meta["image_size"])
    if source == "torch":
        import torch

        from pytorch_impl import onnx_export

        model = build_from_exported(params, meta, "torch")
        data, notes = onnx_export.to_onnx(model, size, opset)

        def reference(x):
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

        return data, notes, onnx_export.EXPORTER, reference
    import mxnet as mx

    from gluon_impl import onnx_export

    if source == "gluon":
        model = build_from_exported(params, meta, "gluon")
        data, notes = onnx_export.to_onnx(model, size, opset)
        return data, notes, onnx_export.EXPORTER, lambda x: model(mx.nd.array(x)).asnumpy()
    from gluon_impl.insightface import MXNetReference

    prefix, epoch = checkpoint_source(folder, meta)
    data, notes = onnx_export.checkpoint_to_onnx(prefix, epoch, size, opset)
    return data, notes, onnx_export.EXPORTER, MXNetReference(prefix, epoch, batch_size=4)


def export(folder, sources=DEFAULT_SOURCES, opset: int = DEFAULT_OPSET, out=None,
           check_batch: int = 4, threads: int = 1, command: str | None = None,
           log=print) -> dict:
    """Write the ONNX files of the exported model ``folder`` (into ``out``, default the
    folder) and ``onnx.json``; returns what ``onnx.json`` holds. Nothing is written unless
    every requested file exports and passes its check."""
    import onnx

    folder = Path(folder)
    out = Path(out) if out is not None else folder
    params, meta = read_exported(folder)
    spec = input_spec(meta, folder / META_FILE)
    x = _check_inputs(meta, max(1, int(check_batch)))
    files: dict[str, dict] = {}
    blobs: dict[str, bytes] = {}
    for source in sources:
        data, notes, exporter, reference = _export_one(source, folder, params, meta, opset)
        name = SOURCES[source]
        embedder = OnnxEmbedder(data, f"{name} (from {source})", image_size=spec["shape"][2],
                                embedding_size=int(meta["embedding_size"]), threads=threads)
        got, want = embedder(x), np.asarray(reference(x), np.float32)
        diff = float(np.abs(_normalised(got) - _normalised(want)).max())
        label = {"torch": "torch", "gluon": "gluon", "checkpoint": "mxnet Module"}[source]
        if not diff <= CHECK_TOLERANCE:
            raise ValueError(f"{name}: the ONNX export from {source} gives embeddings that "
                             f"differ from {label}'s by {diff:.3g} (max abs, L2-normalised, > "
                             f"{CHECK_TOLERANCE:g}) on {len(x)} random images; nothing written")
        model = onnx.load_from_string(data)
        files[name] = {
            "from": source, "exporter": exporter, "opset": int(model.opset_import[0].version),
            "ir_version": int(model.ir_version), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "fixes": notes,
            "check": {"images": len(x), "reference": label,
                      "max_abs_diff_normalised": diff,
                      "max_abs_diff_raw": float(np.abs(got - want).max())}}
        blobs[name] = data
        fixes = f"; fixes: {'; '.join(notes)}" if notes else ""
        log(f"{name}: from {source}, opset {files[name]['opset']}, {len(data)} bytes; "
            f"max |normalised diff| to {label} on {len(x)} random images = {diff:.3g}{fixes}")
    old = {}
    if (out / ONNX_META).is_file():
        try:
            old = json.loads((out / ONNX_META).read_text()).get("files", {})
        except (ValueError, AttributeError):
            old = {}
    kept = {k: v for k, v in old.items() if k not in files and (out / k).is_file()}
    record = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "model_dir": str(folder),
        "backbone": meta["backbone"], "backbone_kwargs": meta.get("backbone_kwargs", {}),
        "embedding_size": int(meta["embedding_size"]), "image_size": int(meta["image_size"]),
        "raw_input": spec["raw_input"], "input": spec,
        "output": {"name": OUTPUT_NAME, "shape": ["N", int(meta["embedding_size"])],
                   "dtype": "float32", "normalised": False,
                   "compare": "L2-normalise each row, then squared L2 distance (SPEC.md 3)"},
        "files": {**kept, **files}, "check_tolerance": CHECK_TOLERANCE,
        "versions": _versions(), "git_commit": git_commit(),
        "command": command or "python -m bench " + " ".join(sys.argv[1:]),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / ONNX_META).unlink(missing_ok=True)
    for name, data in blobs.items():
        atomic_write_bytes(out / name, data)
    atomic_write_bytes(out / ONNX_META, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return record
