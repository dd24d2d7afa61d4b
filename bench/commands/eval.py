"""Evaluate a model on a verification .bin (LFW protocol, common.verification).

The model is an exported model folder (``--model DIR``: model.npz + model.json) or an
InsightFace MXNet checkpoint (``--mxnet PREFIX``), run in our torch and/or gluon backbones,
and for a checkpoint also by MXNet's own ``mx.mod.Module`` (backend ``mxnet``, the reference).
Flip test is on by default (embedding = e(img) + e(flip(img))). Embeddings are computed in
batches with a progress bar, and memoised by image content, so an image that several pairs
share is embedded once. Prints and, with ``--out``, writes metrics.csv (accuracy mean/std,
VAL@FAR, EER, AUC, XNorm per backend), roc.png and results.md.

``--compare-images DIR`` also embeds every image of a folder (no flip) in each backend and
reports the max abs difference of the L2-normalised embeddings to the first backend run
(``mxnet`` when present): embedding_diff.csv.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

NAME = "eval"
HELP = "verification accuracy of a model (.bin, flip test, ROC) in torch/gluon/mxnet"
# the embedders `bench eval` can run, in this order; "mxnet" is MXNet's own Module (the
# reference for a checkpoint), "torch"/"gluon" our backbones: not common.backends.BACKENDS
EVAL_BACKENDS = ("mxnet", "gluon", "torch")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}


def add_arguments(parser):
    parser.add_argument("bin", help="verification .bin (InsightFace layout)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="exported model folder (model.npz + model.json)")
    src.add_argument("--mxnet", metavar="PREFIX", help="InsightFace MXNet checkpoint prefix")
    parser.add_argument("--epoch", type=int, default=0, help="MXNet checkpoint epoch")
    parser.add_argument("--backend", choices=("torch", "gluon", "mxnet", "all"), default="all",
                        help="all = torch and gluon, plus mxnet for an MXNet checkpoint")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no flip test")
    parser.add_argument("--batch-size", type=int, default=64, help="images per embedding batch")
    parser.add_argument("--compare-images", metavar="DIR",
                        help="also compare embeddings of every image under DIR across backends")
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


def load_embedders(args) -> tuple[dict[str, CachedEmbedder], dict]:
    """({backend: CachedEmbedder} in the order mxnet, gluon, torch; model meta)."""
    from bench.commands.import_model import build_from_exported, read_exported

    wanted = EVAL_BACKENDS if args.backend == "all" else (args.backend,)
    if args.model and args.backend == "mxnet":
        raise ValueError("--backend mxnet needs an MXNet checkpoint (--mxnet PREFIX)")
    if args.model:
        params, meta = read_exported(args.model)
        gluon_model = None
    else:
        from gluon_impl.insightface import MXNetReference, load_insightface
        from gluon_impl.transfer import export_params

        gluon_model, name, kwargs = load_insightface(args.mxnet, args.epoch)
        params = export_params(gluon_model)
        meta = {"backbone": name, "embedding_size": kwargs.pop("embedding_size"),
                "image_size": kwargs.pop("image_size"), "backbone_kwargs": kwargs}
    out = {}
    for backend in EVAL_BACKENDS:
        if backend not in wanted or (backend == "mxnet" and args.model):
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
    out_meta = dict(meta, image_size=int(meta["image_size"]))
    return out, out_meta


def folder_images(root, image_size: int) -> tuple[list[str], np.ndarray]:
    from common.images import read_image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--compare-images: no such folder: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"--compare-images: no images under {root}")
    images = np.zeros((len(paths), image_size, image_size, 3), np.uint8)
    for i, p in enumerate(paths):
        img = read_image(p)
        if img.shape != images.shape[1:]:
            raise ValueError(f"{p}: shape {img.shape}, the model takes {images.shape[1:]}")
        images[i] = img
    return [str(p.relative_to(root)) for p in paths], images


def _normalised(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _write_csv(path: Path, rows: list[dict]) -> None:
    """Columns of the first row; the csv module's \\r\\n line ends, as these files always had."""
    from bench.report.tables import csv_text

    with open(path, "w", newline="") as f:
        f.write(csv_text(rows, list(rows[0]), lineterminator="\r\n"))


def check(args) -> None:
    """The files exist and the numbers make sense, before a framework is imported."""
    if not Path(args.bin).is_file():
        raise FileNotFoundError(f"verification file {args.bin} does not exist")
    if args.model and not (Path(args.model) / "model.json").is_file():
        raise FileNotFoundError(f"--model {args.model}: no model.json there (an exported model "
                                "folder holds model.npz + model.json)")
    if args.mxnet and not Path(f"{args.mxnet}-symbol.json").is_file():
        raise FileNotFoundError(f"--mxnet {args.mxnet}: {args.mxnet}-symbol.json does not exist")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be an integer >= 1, got {args.batch_size}")
    if args.compare_images and not Path(args.compare_images).is_dir():
        raise FileNotFoundError(f"--compare-images: folder {args.compare_images} does not exist")


def run(args) -> int:
    from common.binfile import decode_bin, load_bin
    from common.verification import embed_images, evaluate

    embedders, meta = load_embedders(args)
    size = meta["image_size"]
    bins, issame = load_bin(args.bin)
    images = decode_bin(bins, image_size=size)
    print(f"{args.bin}: {len(issame)} pairs, {len(images)} images at {size}x{size}; "
          f"model {meta['backbone']} ({meta['embedding_size']}-d); flip test {args.flip}")
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    folder = folder_images(args.compare_images, size) if args.compare_images else None
    results, rows, diffs, plain = {}, [], [], {}
    for backend, embedder in embedders.items():
        if folder is not None:
            plain[backend] = embed_images(embedder, folder[1], args.batch_size, flip=False,
                                          progress=args.progress)[0]
            first = next(iter(plain))
            d = np.abs(_normalised(plain[backend]) - _normalised(plain[first]))
            diffs.append({"backend": backend, "reference": first, "images": len(folder[0]),
                          "max_abs_diff_normalised": float(d.max()),
                          "max_abs_diff_raw": float(np.abs(plain[backend] - plain[first]).max()),
                          "worst_image": folder[0][int(d.max(axis=1).argmax())]})
            print(f"[{backend}] embeddings of {len(folder[0])} images: max |normalised diff| "
                  f"to {first} = {diffs[-1]['max_abs_diff_normalised']:.3g}")
        result = evaluate(embedder, images, issame, batch_size=args.batch_size, flip=args.flip,
                          progress=args.progress)
        results[backend] = result
        row = {"backend": backend, **result.to_dict(), "images_embedded": embedder.computed}
        rows.append(row)
        print(f"[{backend}] accuracy {result.accuracy_mean:.5f} +- {result.accuracy_std:.5f}, "
              f"VAL {result.val_mean:.5f} +- {result.val_std:.5f} @ FAR {result.far_mean:.5f}, "
              f"EER {result.eer:.5f}, XNorm {result.xnorm:.4f}")
        if out:  # written after each backend: a long run keeps what it has finished
            _write_outputs(out, args, meta, rows, diffs, results)
    if out:
        print(f"wrote {out}/metrics.csv, roc.png, results.md")
    return 0


def _write_outputs(out: Path, args, meta: dict, rows, diffs, results) -> None:
    from bench.report.verification_plots import plot_roc

    _write_csv(out / "metrics.csv", rows)
    if diffs:
        _write_csv(out / "embedding_diff.csv", diffs)
    plot_roc(results, out / "roc.png", title=f"{Path(args.bin).name}: {meta['backbone']}")
    _write_markdown(out / "results.md", args, meta, rows, diffs)


def _write_markdown(path: Path, args, meta: dict, rows: list[dict], diffs: list[dict]) -> None:
    from bench.report.tables import markdown_lines

    lines = [f"# {Path(args.bin).name}: {meta['backbone']} ({meta['embedding_size']}-d)", "",
             "Command: `python -m bench " + " ".join(sys.argv[1:]) + "`", ""]
    lines += markdown_lines(
        ["backend", "accuracy", "VAL@FAR=1e-3", "FAR", "EER", "AUC", "XNorm", "flip"],
        ([r["backend"], f"{r['accuracy_mean']:.5f} +- {r['accuracy_std']:.5f}",
          f"{r['val_mean']:.5f} +- {r['val_std']:.5f}", f"{r['far_mean']:.5f}",
          f"{r['eer']:.5f}", f"{r['auc']:.5f}", f"{r['xnorm']:.4f}", r["flip"]] for r in rows))
    if diffs:
        lines.append("")
        lines += markdown_lines(
            ["backend", "reference", "images", "max abs diff (normalised)", "raw"],
            ([d["backend"], d["reference"], d["images"], f"{d['max_abs_diff_normalised']:.3g}",
              f"{d['max_abs_diff_raw']:.3g}"] for d in diffs))
    path.write_text("\n".join(lines) + "\n")
