"""Train every loss in both backends from identical weights on identical data; write results/.

Without arguments: generates the synthetic data set into data/synthetic if it is missing, then
trains all registered losses (the joint "<margin>+<aux>" objectives included) x
{pytorch, gluon} with the default settings (about 4 minutes on 2 CPU cores) and
writes results/synthetic/{results.csv,results.md,curves.png,accuracy_bars.png,roc/}.
A rerun with the same settings skips finished cells (use --force to redo them); an
interrupted run resumes each cell from its last checkpoint in runs/. Exit status 1 when a
cell failed (NaN/Inf loss, error), after all other cells have run.
"""

from __future__ import annotations

import sys
from pathlib import Path

NAME = "run"
HELP = "train all losses x both backends on identical data and write the comparison to results/"

DEFAULT_DATA = Path("data/synthetic")
# The default data set, sized so that all losses x both backends fit in minutes on 2 cores;
# ``difficulty`` was calibrated with this harness so plain softmax lands at 75-95 % on lfw.bin.
DEFAULT_SMALLCNN_WIDTH = 8  # with 48 px images: ~4x faster than width 16 at similar accuracy
SYNTHETIC = {"num_identities": 100, "images_per_identity": 20, "heldout_identities": 50,
             "num_pairs": 1000, "image_size": 112, "difficulty": 1.0, "seed": 0}


RUN_FIELDS = ("data", "results", "runs", "losses", "loss_args", "backends", "backbone",
              "models", "embedding_size", "image_size", "epochs", "steps", "batch_size", "lr",
              "schedule", "warmup_epochs", "momentum", "weight_decay", "decay_all", "seed", "pk",
              "eval_batch_size", "flip_test", "checkpoint_every", "hybridize", "nproc",
              "sample_rate", "force", "progress", "plots")


def add_arguments(p) -> None:
    from bench.run.options import add_config_arguments

    add_config_arguments(p, RUN_FIELDS, defaults={"data": str(DEFAULT_DATA)}, helps={
        "data": "data folder with train.rec/train.idx/property and *.bin; the default folder "
                "is generated (synthetic) when missing"})
    p.add_argument("--width", type=int, default=None,
                   help=f"backbone width argument (smallcnn: channels of the first stage; "
                        f"default {DEFAULT_SMALLCNN_WIDTH} for smallcnn, the backbone's own "
                        "default otherwise)")
    p.add_argument("--difficulty", type=float, default=None,
                   help="difficulty of the generated synthetic set (only when it is generated)")


def config(args):
    """The run's ``HarnessConfig`` from the parsed arguments (no framework needed)."""
    from bench.run.options import command_line, config_from_args

    return config_from_args(args, backbone_kwargs=backbone_kwargs(args),
                            command=command_line())


def check(args) -> None:
    """Every argument checkable without torch or mxnet, before any data is generated."""
    from bench.run.options import check, check_data

    if args.width is not None and args.width < 1:
        raise ValueError(f"--width must be an integer >= 1, got {args.width}")
    if args.difficulty is not None and not args.difficulty >= 0:
        raise ValueError(f"--difficulty must be >= 0, got {args.difficulty}")
    check(config(args))
    check_data(args.data, generated=DEFAULT_DATA)


def ensure_data(args) -> Path:
    """The data folder; the default synthetic set is generated when it is missing."""
    data = Path(args.data)
    if data.exists() or data.resolve() != DEFAULT_DATA.resolve():
        return data
    from common.synthetic import generate

    kw = dict(SYNTHETIC)
    if args.difficulty is not None:
        kw["difficulty"] = args.difficulty
    print(f"generating the synthetic data set into {data}: {kw}", flush=True)
    generate(data, progress=args.progress, **kw)
    return data


def backbone_kwargs(args) -> dict:
    if args.width is not None:
        return {"width": args.width}
    return {"width": DEFAULT_SMALLCNN_WIDTH} if args.backbone == "smallcnn" else {}


def run(args) -> int:
    from bench.run.harness import run as run_harness

    data = ensure_data(args)
    cells = run_harness(config(args))
    failed = [c for c in cells if c.get("status") != "ok"]
    for c in failed:
        print(f"FAILED {c['loss']}/{c['backend']}: {c['status']}: {c['message']}",
              file=sys.stderr)
    from bench.report.results import results_folder
    from bench.run.config import hashed

    print(f"{len(cells) - len(failed)}/{len(cells)} cells ok; tables in "
          f"{results_folder(args.results, data.name, hashed(config(args)))}")
    return 1 if failed else 0
