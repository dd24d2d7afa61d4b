"""Import an InsightFace MXNet checkpoint (prefix-symbol.json + prefix-EPOCH.params).

MXNet checkpoint -> our gluon backbone (parameters by name, every layer's attributes checked)
-> canonical parameters (gluon_impl.transfer.export_params) -> our torch backbone
(pytorch_impl.transfer.import_params): the same torch<->gluon path the harness uses. Writes
the exported model ``OUT/model.npz`` + ``OUT/model.json`` (docs/ARCHITECTURE.md; the format is
``bench.run.export``'s, written crash-safe with ``model.json`` last), then checks
that MXNet's own Module, our gluon model and our torch model give the same embeddings on
random inputs. Errors (ValueError/FileNotFoundError) name the missing file, the unsupported
architecture, or list missing/unused arrays and shape or attribute mismatches.
"""

from __future__ import annotations

import numpy as np

# the exported-model format lives with the harness, which writes one per finished cell; these
# names stay importable from here (bench eval, older callers)
from bench.run.export import build_from_exported, read_exported, write_exported

__all__ = ["build_from_exported", "read_exported", "write_exported"]

NAME = "import-model"
HELP = "InsightFace MXNet checkpoint -> exported model dir (model.npz + model.json)"


def add_arguments(parser):
    parser.add_argument("prefix", help="checkpoint prefix: PREFIX-symbol.json, PREFIX-EPOCH.params")
    parser.add_argument("out", help="output folder for model.npz + model.json")
    parser.add_argument("--epoch", type=int, default=0, help="checkpoint epoch")
    parser.add_argument("--arch", default=None,
                        help="expected backbone name (error if the graph is another one)")
    parser.add_argument("--check-batch", type=int, default=4,
                        help="random images for the MXNet/gluon/torch check (0: skip)")


def run(args) -> int:
    import mxnet as mx
    import torch

    from gluon_impl.insightface import MXNetReference, checkpoint_paths, load_insightface
    from gluon_impl.transfer import export_params

    gluon_model, name, kwargs = load_insightface(args.prefix, args.epoch, args.arch)
    params = export_params(gluon_model)
    symbol_path, params_path = checkpoint_paths(args.prefix, args.epoch)
    build = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()
             if k not in ("embedding_size", "image_size")}
    meta = {"backbone": name, "embedding_size": kwargs["embedding_size"],
            "image_size": kwargs["image_size"], "backend": "mxnet-insightface",
            "backbone_kwargs": build, "raw_input": bool(gluon_model.raw_input),
            "source": {"symbol": str(symbol_path), "params": str(params_path),
                       "epoch": args.epoch}}
    write_exported(args.out, params, meta)
    print(f"{symbol_path}: {name} {kwargs}, {len(params)} arrays -> {args.out}")
    if args.check_batch > 0:
        torch_model = build_from_exported(params, meta, "torch")
        size = kwargs["image_size"]
        rng = np.random.RandomState(0)
        x = rng.randint(0, 256, (args.check_batch, 3, size, size)).astype(np.float32)
        if not gluon_model.raw_input:
            x = (x / 255 - 0.5) / 0.5
        ref = MXNetReference(args.prefix, args.epoch, batch_size=args.check_batch)(x)
        out_gluon = gluon_model(mx.nd.array(x)).asnumpy()
        with torch.no_grad():
            out_torch = torch_model(torch.from_numpy(x)).numpy()
        print(f"max |MXNet Module - gluon| = {np.abs(ref - out_gluon).max():.3g}, "
              f"max |MXNet Module - torch| = {np.abs(ref - out_torch).max():.3g} "
              f"(embedding max |e| = {np.abs(ref).max():.3g})")
    return 0
