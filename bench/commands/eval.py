"""Evaluate a model on one or several verification .bin files (LFW protocol, common.verification).

The model is an exported model folder (``--model DIR``: model.npz + model.json) or an
InsightFace MXNet checkpoint (``--mxnet PREFIX``), run in our torch and/or gluon backbones,
and for a checkpoint also by MXNet's own ``mx.mod.Module`` (backend ``mxnet``, the reference).
Flip test is on by default (embedding = e(img) + e(flip(img))). Embeddings are computed in
batches with a progress bar, and memoised by image content, so an image that several pairs
share is embedded once. Prints and, with ``--out``, writes metrics.csv (accuracy mean/std,
VAL@FAR, EER, AUC, XNorm, threshold per backend), roc.png and results.md.

Several targets in one pass (InsightFace's ``--target lfw,cfp_fp,agedb_30``): ``--targets``
instead of the positional .bin, either a folder (every ``*.bin`` directly in it, sorted) or a
comma-separated list of target names, each ``NAME`` read from ``TARGET_DIR/NAME.bin``
(``--target-dir``, default the current folder), and/or paths ending in ``.bin``; a target is
labelled by its file stem. Each backend's memo is shared by all targets, so an image that
several targets hold is embedded once per backend. The outputs have one row per (target,
backend), a ``target`` column first: metrics.csv (one table across targets), results.md (the
combined table, plus each backend's count of images embedded against pair images) and
roc.png (one curve per (target, backend)). Every file is rewritten atomically after each
(target, backend), so a long run keeps what it has finished and a kill never leaves a torn
file. A target name without its .bin, or a folder without any, is refused before a framework
is imported.

``images_embedded`` (each row) counts the network inputs that row's evaluation embedded and
no earlier step of the run had (with flip test an image is two inputs, plain and flipped);
``pair_images`` is the number of images the target's pairs hold (2 per pair).

``--compare-images DIR`` also embeds every image of a folder (no flip; ``--max-images N``: the
first N in path order; each resized/padded to the model's input as a .bin's images are) in
each backend and reports the max abs difference of the L2-normalised embeddings to the first
backend run (``mxnet`` when present): embedding_diff.csv; with more than two backends also
every pair of them: embedding_diff_matrix.csv and a table in results.md.

ONNX (``--backend onnx``): ``.onnx`` files run by onnxruntime (CPU), each a backend of its own
named ``onnx-<tag>`` for ``model.<tag>.onnx`` (``onnx-torch``, ``onnx-mxnet``,
``onnx-checkpoint``: what ``python -m bench export DIR --onnx`` writes), else
``onnx-<file stem>``. The files are those given by ``--onnx`` (a file, a comma-separated list,
or a folder), else the ones beside ``--model DIR``. ``--onnx`` alone evaluates just them; the
input size and normalisation come from the onnx.json (or model.json) beside a file, else from
the graph's input shape with the bench's normalisation (x/255-0.5)/0.5. A file that is not an
embedding model (unreadable, not one float N x 3 x H x W input, not one N x D output) is a
one-line error naming it.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import numpy as np

NAME = "eval"
HELP = "verification accuracy of a model (.bin, flip test, ROC) in torch/gluon/mxnet/onnx"
# the embedders `bench eval` can run, in this order; "mxnet" is MXNet's own Module (the
# reference for a checkpoint), "torch"/"gluon" our backbones (not common.backends.BACKENDS),
# "onnx" every .onnx file (one backend "onnx-<tag>" each)
EVAL_BACKENDS = ("mxnet", "gluon", "torch", "onnx")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}


def add_arguments(parser):
    parser.add_argument("bin", nargs="?", default=None,
                        help="verification .bin (InsightFace layout); or several with --targets")
    parser.add_argument("--targets", metavar="SPEC",
                        help="several verification targets in one pass, instead of the .bin: a "
                             "folder (every *.bin in it) or a comma-separated list of target "
                             "names (NAME is TARGET_DIR/NAME.bin, e.g. lfw,cfp_fp,agedb_30) "
                             "and/or paths ending in .bin")
    parser.add_argument("--target-dir", metavar="TARGET_DIR", default=None,
                        help="folder holding NAME.bin for each target NAME of --targets "
                             "(default: the current folder)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--model", help="exported model folder (model.npz + model.json)")
    src.add_argument("--mxnet", metavar="PREFIX", help="InsightFace MXNet checkpoint prefix")
    parser.add_argument("--onnx", metavar="SPEC", default=None,
                        help="ONNX model(s) to run with onnxruntime: an .onnx file, a comma-"
                             "separated list, or a folder (its .onnx files); alone or beside "
                             "--model/--mxnet (default with --model: the .onnx files in DIR)")
    parser.add_argument("--epoch", type=int, default=0, help="MXNet checkpoint epoch")
    parser.add_argument("--backend", metavar="LIST", default="all",
                        help="comma-separated among torch, gluon, mxnet, onnx; all = torch and "
                             "gluon, plus mxnet for an MXNet checkpoint, plus every ONNX file "
                             "(--onnx, or beside --model DIR)")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no flip test")
    parser.add_argument("--batch-size", type=int, default=64, help="images per embedding batch")
    parser.add_argument("--compare-images", metavar="DIR",
                        help="also compare embeddings of every image under DIR across backends")
    parser.add_argument("--max-images", type=int, default=None, metavar="N",
                        help="--compare-images: only the first N images in path order "
                             "(default: all)")
    parser.add_argument("--out", help="folder for metrics.csv, roc.png, results.md")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")


class CachedEmbedder:
    """embed_fn for common.verification: normalised float32 NCHW -> embeddings, memoised.

    Rows are keyed by their bytes (identical decoded pixels give identical rows). For a
    ``raw_input`` model the normalised input (x/255-0.5)/0.5 is mapped back to the exact
    integer pixels, rint(x*127.5 + 127.5), which the graph normalises itself.
    """

    def __init__(self, fn, raw_input: bool):
        self.fn, self.raw_input, self.cache, self.computed = fn, raw_input, {}, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        keys = [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x]
        todo = {}
        for i, k in enumerate(keys):
            if k not in self.cache and k not in todo:
                todo[k] = i
        if todo:
            batch = x[list(todo.values())]
            if self.raw_input:
                batch = np.rint(batch * 127.5 + 127.5).astype(np.float32)
            emb = np.asarray(self.fn(np.ascontiguousarray(batch)), dtype=np.float32)
            self.cache.update(zip(todo, emb))
            self.computed += len(todo)
        return np.stack([self.cache[k] for k in keys])


def _torch_fn(model):
    import torch

    def fn(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return fn


def _gluon_fn(model):
    import mxnet as mx

    model.hybridize(static_alloc=True)
    return lambda x: model(mx.nd.array(x)).asnumpy()


def parse_backends(spec: str) -> tuple[str, ...]:
    """``--backend``: ``all`` or a comma-separated list of EVAL_BACKENDS, in their order."""
    names = [s.strip() for s in str(spec).split(",")]
    if names == ["all"]:
        return ("all",)
    if not all(names) or any(n not in EVAL_BACKENDS for n in names):
        raise ValueError(f"--backend must be all or a comma-separated list of "
                         f"{', '.join(EVAL_BACKENDS)}, got {spec!r}")
    return tuple(b for b in EVAL_BACKENDS if b in names)


def onnx_files(args) -> list[Path]:
    """The .onnx files ``--backend onnx`` runs: ``--onnx``, else those beside ``--model``."""
    from bench.run.onnx_model import folder_onnx_files, resolve_onnx

    if args.onnx is not None:
        return resolve_onnx(args.onnx)
    if args.model and Path(args.model).is_dir():
        return folder_onnx_files(args.model)
    return []


def wanted_backends(args) -> tuple[str, ...]:
    """The backends this run embeds with (``all`` resolved); framework-free, raises on a
    backend the given model cannot run."""
    names = parse_backends(args.backend)
    framework = bool(args.model or args.mxnet)
    if not framework and args.onnx is None:
        raise ValueError("give the model: --model DIR, --mxnet PREFIX and/or --onnx FILE")
    files = onnx_files(args) if "onnx" in names or names == ("all",) else []
    if names == ("all",):
        names = tuple(b for b in EVAL_BACKENDS
                      if (b == "mxnet" and args.mxnet) or (b == "onnx" and files)
                      or (b in ("gluon", "torch") and framework))
    if "mxnet" in names and not args.mxnet:
        raise ValueError("--backend mxnet needs an MXNet checkpoint (--mxnet PREFIX)")
    for b in ("gluon", "torch"):
        if b in names and not framework:
            raise ValueError(f"--backend {b} needs --model DIR or --mxnet PREFIX (--onnx "
                             "alone runs only the ONNX files)")
    if "onnx" in names and not files:
        raise FileNotFoundError(
            f"--backend onnx: no .onnx file{f' in {args.model}' if args.model else ''}: give "
            "--onnx FILE, or write them beside the model: python -m bench export DIR --onnx")
    if args.onnx is not None and "onnx" not in names:
        raise ValueError(f"--onnx is given but --backend {args.backend} does not include onnx")
    return names


def _onnx_embedders(args, meta: dict | None) -> tuple[dict[str, CachedEmbedder], dict]:
    """{onnx-<tag>: CachedEmbedder} for the ONNX files, and the meta (``meta``, or from the
    first file when no other model is given); every file must take the same image size."""
    from bench.run.onnx_model import OnnxEmbedder, onnx_label, onnx_meta_for

    out = {}
    for path in onnx_files(args):
        info = onnx_meta_for(path) or {}
        size = info.get("image_size", meta["image_size"] if meta else None)
        dim = info.get("embedding_size", meta["embedding_size"] if meta else None)
        raw = bool(info.get("raw_input", meta.get("raw_input", False) if meta else False))
        embedder = OnnxEmbedder(path, str(path), image_size=size, embedding_size=dim,
                                threads=args.threads)
        if meta is None:
            meta = {"backbone": info.get("backbone", "onnx"),
                    "embedding_size": embedder.embedding_size,
                    "image_size": embedder.image_size, "raw_input": raw}
        elif embedder.image_size != int(meta["image_size"]):
            raise ValueError(f"{path}: takes {embedder.image_size}x{embedder.image_size} "
                             f"images, the model takes {meta['image_size']}x"
                             f"{meta['image_size']} (one .bin is decoded at one size)")
        out[onnx_label(path)] = CachedEmbedder(embedder, raw_input=raw)
    return out, meta


def load_embedders(args) -> tuple[dict[str, CachedEmbedder], dict]:
    """({backend: CachedEmbedder} in the order mxnet, gluon, torch, onnx-*; model meta)."""
    from bench.commands.import_model import build_from_exported, read_exported

    wanted = wanted_backends(args)
    gluon_model = meta = None
    if args.model:
        params, meta = read_exported(args.model)
    elif args.mxnet:
        from gluon_impl.insightface import MXNetReference, load_insightface
        from gluon_impl.transfer import export_params

        gluon_model, name, kwargs = load_insightface(args.mxnet, args.epoch)
        params = export_params(gluon_model)
        meta = {"backbone": name, "embedding_size": kwargs.pop("embedding_size"),
                "image_size": kwargs.pop("image_size"), "backbone_kwargs": kwargs,
                "raw_input": bool(gluon_model.raw_input)}
    out = {}
    for backend in ("mxnet", "gluon", "torch"):
        if backend not in wanted:
            continue
        if backend == "mxnet":
            ref = MXNetReference(args.mxnet, args.epoch, batch_size=args.batch_size)
            out[backend] = CachedEmbedder(ref, raw_input=bool(gluon_model.raw_input))
        elif backend == "gluon":
            model = gluon_model or build_from_exported(params, meta, "gluon")
            out[backend] = CachedEmbedder(_gluon_fn(model), raw_input=bool(model.raw_input))
        else:
            model = build_from_exported(params, meta, "torch")
            out[backend] = CachedEmbedder(_torch_fn(model), raw_input=bool(model.raw_input))
    if "onnx" in wanted:
        onnx, meta = _onnx_embedders(args, meta)
        out.update(onnx)
    out_meta = dict(meta, image_size=int(meta["image_size"]))
    return out, out_meta


def folder_images(root, image_size: int,
                  limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """The images under ``root`` (the first ``limit`` in path order), RGB uint8, each
    resized/padded to the model's square input as a .bin's images are (common.images)."""
    from common.images import read_image, to_size

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--compare-images: no such folder: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"--compare-images: no images under {root}")
    paths = paths[:limit] if limit else paths
    images = np.zeros((len(paths), image_size, image_size, 3), np.uint8)
    for i, p in enumerate(paths):
        img = read_image(p)
        images[i] = img if img.shape == images.shape[1:] else to_size(img, image_size)
    return [str(p.relative_to(root)) for p in paths], images


def _normalised(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def diff_matrix(plain: dict[str, np.ndarray]) -> list[dict]:
    """Every pair of backends: one row per backend, a column per backend, the max abs
    difference of their L2-normalised embeddings of the same images (0 on the diagonal)."""
    normed = {b: _normalised(e) for b, e in plain.items()}
    return [{"backend": a, **{b: float(np.abs(normed[a] - normed[b]).max()) for b in normed}}
            for a in normed]


def resolve_targets(spec: str, target_dir: str | None = None) -> list[tuple[str, Path]]:
    """``--targets SPEC`` -> [(label, path)] in the given order (a folder's files sorted).

    SPEC: a folder (every ``*.bin`` directly in it), or a comma-separated list of target names
    (``NAME`` -> ``TARGET_DIR/NAME.bin``, TARGET_DIR the current folder by default) and/or paths
    ending in ``.bin``. A label is the file's stem; a file named twice is evaluated once, two
    files with one stem are an error (their rows could not be told apart). Framework-free.
    """
    items = [s.strip() for s in str(spec).split(",")]
    if not any(items):
        raise ValueError("--targets: no target given")
    if any(not s for s in items):
        raise ValueError(f"--targets {spec}: an empty name between commas")
    if target_dir is not None and not Path(target_dir).is_dir():
        raise FileNotFoundError(f"--target-dir {target_dir}: no such folder")
    if len(items) == 1 and not items[0].endswith(".bin") and Path(items[0]).is_dir():
        folder = Path(items[0])
        paths = sorted(p for p in folder.glob("*.bin") if p.is_file())
        if not paths:
            raise FileNotFoundError(f"--targets: no *.bin in {folder}")
    else:
        base = Path(target_dir if target_dir is not None else ".")
        paths = []
        for item in items:
            if item.endswith(".bin"):
                path = Path(item)
                if not path.is_file():
                    raise FileNotFoundError(f"--targets: verification file {item} does not exist")
            elif "/" in item or "\\" in item:
                raise ValueError(f"--targets: {item!r} is neither a target name (no '/') nor a "
                                 "path ending in .bin")
            else:
                path = base / f"{item}.bin"
                if not path.is_file():
                    raise FileNotFoundError(
                        f"--targets: target {item!r}: no {item}.bin in {base.resolve()} "
                        "(--target-dir)")
            paths.append(path)
    out: list[tuple[str, Path]] = []
    seen: dict[Path, Path] = {}
    for path in paths:
        real = path.resolve()
        if real in seen:
            continue
        for label, other in out:
            if label == path.stem:
                raise ValueError(f"--targets: two targets named {label!r}: {other} and {path}")
        seen[real] = path
        out.append((path.stem, path))
    return out


def targets_of(args) -> list[tuple[str, Path]]:
    """[(label, path)]: the resolved ``--targets``, or the one positional .bin."""
    if args.targets is not None:
        return resolve_targets(args.targets, args.target_dir)
    return [(Path(args.bin).stem, Path(args.bin))]


def check(args) -> None:
    """The files exist and the numbers make sense, before a framework is imported."""
    if (args.bin is None) == (args.targets is None):
        raise ValueError("give exactly one of a verification .bin (positional) and "
                         f"--targets SPEC, got {'both' if args.bin else 'neither'}")
    if args.target_dir is not None and args.targets is None:
        raise ValueError("--target-dir needs --targets (it is where target names are looked up)")
    if args.bin is not None and not Path(args.bin).is_file():
        raise FileNotFoundError(f"verification file {args.bin} does not exist")
    if args.targets is not None:
        resolve_targets(args.targets, args.target_dir)
    if args.model and not (Path(args.model) / "model.json").is_file():
        raise FileNotFoundError(f"--model {args.model}: no model.json there (an exported model "
                                "folder holds model.npz + model.json)")
    if args.mxnet and not Path(f"{args.mxnet}-symbol.json").is_file():
        raise FileNotFoundError(f"--mxnet {args.mxnet}: {args.mxnet}-symbol.json does not exist")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
    if args.compare_images and not Path(args.compare_images).is_dir():
        raise FileNotFoundError(f"--compare-images: folder {args.compare_images} does not exist")
    if args.max_images is not None:
        if args.compare_images is None:
            raise ValueError("--max-images needs --compare-images (it limits that folder)")
        if args.max_images < 1:
            raise ValueError(f"--max-images must be an integer >= 1, got {args.max_images}")
    if "onnx" in wanted_backends(args):
        from bench.run.onnx_model import require_packages

        require_packages("--backend onnx")


def run(args) -> int:
    from common.binfile import decode_bin, load_bin
    from common.verification import embed_images, evaluate

    targets = targets_of(args)
    multi = args.targets is not None
    embedders, meta = load_embedders(args)
    size = meta["image_size"]
    print(f"model {meta['backbone']} ({meta['embedding_size']}-d, {size}x{size}); "
          f"{len(targets)} target(s); flip test {args.flip}")
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    report = _Report(out, args, meta, multi)
    folder = folder_images(args.compare_images, size, args.max_images) \
        if args.compare_images else None
    if folder is not None:
        plain = {}
        for backend, embedder in embedders.items():
            plain[backend] = embed_images(embedder, folder[1], args.batch_size, flip=False,
                                          progress=args.progress)[0]
            first = next(iter(plain))
            d = np.abs(_normalised(plain[backend]) - _normalised(plain[first]))
            report.diffs.append({
                "backend": backend, "reference": first, "images": len(folder[0]),
                "max_abs_diff_normalised": float(d.max()),
                "max_abs_diff_raw": float(np.abs(plain[backend] - plain[first]).max()),
                "worst_image": folder[0][int(d.max(axis=1).argmax())]})
            print(f"[{backend}] embeddings of {len(folder[0])} images: max |normalised diff| "
                  f"to {first} = {report.diffs[-1]['max_abs_diff_normalised']:.3g}")
            if len(plain) > 2:
                report.matrix = diff_matrix(plain)
            report.write()
    distinct: set[bytes] = set()
    for label, path in targets:
        bins, issame = load_bin(path)
        images = decode_bin(bins, image_size=size)
        keys = {hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in images}
        distinct |= keys
        report.distinct = len(distinct)
        report.targets.append({"target": label, "path": str(path), "pairs": len(issame),
                               "pair_images": len(images), "distinct_images": len(keys)})
        print(f"{path}: {len(issame)} pairs, {len(images)} images ({len(keys)} distinct) at "
              f"{size}x{size}")
        for backend, embedder in embedders.items():
            before = embedder.computed
            result = evaluate(embedder, images, issame, batch_size=args.batch_size,
                              flip=args.flip, progress=args.progress)
            report.results[(label, backend)] = result
            row = {"target": label} if multi else {}
            row.update(backend=backend, **result.to_dict(),
                       images_embedded=embedder.computed - before, pair_images=len(images))
            report.rows.append(row)
            name = f"{label}/{backend}" if multi else backend
            print(f"[{name}] accuracy {result.accuracy_mean:.5f} +- {result.accuracy_std:.5f}, "
                  f"VAL {result.val_mean:.5f} +- {result.val_std:.5f} @ FAR "
                  f"{result.far_mean:.5f}, AUC {result.auc:.5f}, EER {result.eer:.5f}, "
                  f"threshold {result.threshold:.3f}, XNorm {result.xnorm:.4f}")
            report.write()  # after each (target, backend): a long run keeps what it finished
    for s in report.summary():
        print(f"[{s['backend']}] embedded {s['images_embedded']} network inputs for "
              f"{s['pair_images']} pair images of {s['targets']} target(s) "
              f"({s['distinct_images']} distinct images"
              f"{', each plain and flipped' if args.flip else ''})")
    report.write()
    if out:
        print(f"wrote {out}/metrics.csv, roc.png, results.md")
    return 0


def _csv_bytes(rows: list[dict]) -> bytes:
    """Columns of the first row; the csv module's \\r\\n line ends, as these files always had."""
    from bench.report.tables import csv_text

    return csv_text(rows, list(rows[0]), lineterminator="\r\n").encode("utf-8")


class _Report:
    """What the run has so far, and its files under ``--out`` (each written atomically)."""

    def __init__(self, out: Path | None, args, meta: dict, multi: bool):
        self.out, self.args, self.meta, self.multi = out, args, meta, multi
        self.rows: list[dict] = []
        self.diffs: list[dict] = []
        self.matrix: list[dict] = []  # every pair of backends, with more than two of them
        self.targets: list[dict] = []
        self.results: dict = {}  # (target, backend) -> VerificationResult
        self.distinct = 0  # distinct images over the targets read so far

    def summary(self) -> list[dict]:
        """Per backend: targets done, their pair images, network inputs embedded."""
        out: dict[str, dict] = {}
        for r in self.rows:
            s = out.setdefault(r["backend"], {"backend": r["backend"], "targets": 0,
                                              "pair_images": 0, "images_embedded": 0,
                                              "distinct_images": self.distinct})
            s["targets"] += 1
            s["pair_images"] += r["pair_images"]
            s["images_embedded"] += r["images_embedded"]
        return list(out.values())

    def write(self) -> None:
        if self.out is None:
            return
        from common.fileio import atomic_write_bytes

        if self.rows:
            atomic_write_bytes(self.out / "metrics.csv", _csv_bytes(self.rows))
        if self.diffs:
            atomic_write_bytes(self.out / "embedding_diff.csv", _csv_bytes(self.diffs))
        if self.matrix:
            atomic_write_bytes(self.out / "embedding_diff_matrix.csv", _csv_bytes(self.matrix))
        if self.results:
            atomic_write_bytes(self.out / "roc.png", self._roc_png())
        atomic_write_bytes(self.out / "results.md", self._markdown().encode("utf-8"))

    def _title(self) -> str:
        model = f"{self.meta['backbone']} ({self.meta['embedding_size']}-d)"
        if self.multi:
            return f"{len(self.targets)} verification targets: {model}"
        return f"{Path(self.args.bin).name}: {model}"

    def _roc_png(self) -> bytes:
        from bench.report.verification_plots import plot_roc, plot_roc_by_target

        if self.multi:
            fig = plot_roc_by_target(self.results, title=self._title())
        else:
            fig = plot_roc({b: r for (_, b), r in self.results.items()},
                           title=f"{Path(self.args.bin).name}: {self.meta['backbone']}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        return buf.getvalue()

    def _markdown(self) -> str:
        from bench.report.tables import markdown_lines

        lines = [f"# {self._title()}", "",
                 "Command: `python -m bench " + " ".join(sys.argv[1:]) + "`", ""]
        if self.multi and self.targets:
            lines += markdown_lines(
                ["target", "file", "pairs", "pair images", "distinct images"],
                ([t["target"], t["path"], t["pairs"], t["pair_images"], t["distinct_images"]]
                 for t in self.targets), align="llrrr")
            lines.append("")
        head = ["target"] if self.multi else []
        lines += markdown_lines(
            head + ["backend", "accuracy", "VAL@FAR=1e-3", "FAR", "EER", "AUC", "threshold",
                    "XNorm", "flip", "embedded / pair images"],
            (([r["target"]] if self.multi else []) + [
                r["backend"], f"{r['accuracy_mean']:.5f} +- {r['accuracy_std']:.5f}",
                f"{r['val_mean']:.5f} +- {r['val_std']:.5f}", f"{r['far_mean']:.5f}",
                f"{r['eer']:.5f}", f"{r['auc']:.5f}", f"{r['threshold']:.3f}",
                f"{r['xnorm']:.4f}", r["flip"], f"{r['images_embedded']} / {r['pair_images']}"]
             for r in self.rows))
        if self.multi and self.rows:
            lines += ["", "Images embedded per backend over all targets (network inputs: with "
                      "flip test each new image is embedded plain and flipped; an image that "
                      "several targets share is embedded once):", ""]
            lines += markdown_lines(
                ["backend", "targets", "pair images", "distinct images", "images embedded"],
                ([s["backend"], s["targets"], s["pair_images"], s["distinct_images"],
                  s["images_embedded"]] for s in self.summary()), align="lrrrr")
        if self.diffs:
            lines.append("")
            lines += markdown_lines(
                ["backend", "reference", "images", "max abs diff (normalised)", "raw"],
                ([d["backend"], d["reference"], d["images"],
                  f"{d['max_abs_diff_normalised']:.3g}", f"{d['max_abs_diff_raw']:.3g}"]
                 for d in self.diffs))
        if self.matrix:
            names = [r["backend"] for r in self.matrix]
            lines += ["", f"Every pair: max abs difference of the L2-normalised embeddings of "
                      f"the same {self.diffs[0]['images']} images (no flip):", ""]
            lines += markdown_lines(["", *names],
                                    ([r["backend"], *(f"{r[n]:.3g}" for n in names)]
                                     for r in self.matrix), align="l" + "r" * len(names))
        return "\n".join(lines) + "\n"
