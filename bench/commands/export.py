"""Export a model folder for deployment: ``python -m bench export MODEL_DIR --onnx``.

MODEL_DIR is an exported model (model.npz + model.json: any finished cell's
``models/<data set>/<cell>/``, or ``import-model``'s output). ``--onnx`` writes, into the
folder (or ``--out DIR``), ``model.torch.onnx`` (our PyTorch backbone through
``torch.onnx.export``) and ``model.mxnet.onnx`` (our Gluon backbone, hybridised, through
MXNet's ``mx.onnx`` converter), each with one input ``data`` (float32 N x 3 x H x W, dynamic
N, normalised as model.json says) and one output ``embedding`` (N x D, not normalised), and
``onnx.json`` (input, output, exporters, opset, versions, checks). ``--from checkpoint`` adds
``model.checkpoint.onnx``: the MXNet checkpoint an ``import-model`` folder came from, as
published, through MXNet's converter (with the fixes it needs, listed in onnx.json).

Before anything is written each file is run by onnxruntime on random images and must give
the embeddings of its source (torch, gluon, MXNet's Module) to 1e-4 (max abs difference of
the L2-normalised rows); the differences are printed and kept in onnx.json. ``bench eval
--model DIR`` then evaluates the ONNX files beside the model too (``--backend onnx``).
"""

from __future__ import annotations

from pathlib import Path

from bench.run import onnx_model
from bench.run.export import META_FILE, read_meta

NAME = "export"
HELP = "exported model -> ONNX (torch and MXNet exporters), checked with onnxruntime"


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL_DIR",
                        help="exported model folder (model.npz + model.json)")
    parser.add_argument("--onnx", action="store_true",
                        help="write ONNX files (the one format so far; required)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder for the .onnx files and onnx.json (default: MODEL_DIR)")
    parser.add_argument("--from", dest="sources", metavar="LIST",
                        default=",".join(onnx_model.DEFAULT_SOURCES),
                        help="exporters, comma-separated: torch (torch.onnx.export of our "
                             "PyTorch model), gluon (MXNet's converter on our Gluon model), "
                             "checkpoint (MXNet's converter on the MXNet checkpoint an "
                             "import-model folder came from)")
    parser.add_argument("--opset", type=int, default=onnx_model.DEFAULT_OPSET,
                        help=f"ONNX opset, {onnx_model.MIN_OPSET} to {onnx_model.MAX_OPSET}")
    parser.add_argument("--check-batch", type=int, default=4,
                        help="random images each file is checked on against its source")


def check(args) -> None:
    """The options, the folder and its model.json, before a framework is imported."""
    if not args.onnx:
        raise ValueError("give the format to write: --onnx (the one format so far)")
    sources = onnx_model.parse_sources(args.sources)
    onnx_model.check_opset(args.opset)
    if args.check_batch < 1:
        raise ValueError(f"--check-batch must be an integer >= 1, got {args.check_batch}")
    folder = Path(args.model)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    meta = read_meta(folder)  # a folder without model.json is refused, naming the file
    onnx_model.input_spec(meta, folder / META_FILE)
    if "checkpoint" in sources:
        onnx_model.checkpoint_source(folder, meta)
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    onnx_model.require_packages("bench export --onnx")


def run(args) -> int:
    out = Path(args.out) if args.out else Path(args.model)
    record = onnx_model.export(args.model, onnx_model.parse_sources(args.sources), args.opset,
                               out=out, check_batch=args.check_batch, threads=args.threads)
    names = ", ".join(record["files"])
    print(f"wrote {out}: {names}, {onnx_model.ONNX_META}")
    return 0
