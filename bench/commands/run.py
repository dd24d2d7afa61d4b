"""Train every loss in both backends from identical weights on identical data; write results/.

Without arguments: generates the synthetic data set into data/synthetic if it is missing, then
trains all registered losses (the joint "<margin>+<aux>" objectives included) x
{pytorch, gluon} with the default (CPU, ~15 min) settings and
writes results/synthetic/{results.csv,results.md,curves.png,accuracy_bars.png,roc/}.
A rerun with the same settings skips finished cells (use --force to redo them); an
interrupted run resumes each cell from its last checkpoint in runs/. Exit status 1 when a
cell failed (NaN/Inf loss, error), after all other cells have run.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

NAME = "run"
HELP = "train all losses x both backends on identical data and write the comparison to results/"

DEFAULT_DATA = Path("data/synthetic")
# The default data set, sized so that all losses x both backends fit in ~15 min on 2 cores;
# ``difficulty`` was calibrated with this harness so plain softmax lands at 75-95 % on lfw.bin.
DEFAULT_SMALLCNN_WIDTH = 8  # with 48 px images: ~4x faster than width 16 at similar accuracy
SYNTHETIC = {"num_identities": 100, "images_per_identity": 20, "heldout_identities": 50,
             "num_pairs": 1000, "image_size": 112, "difficulty": 1.0, "seed": 0}


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_arguments(p) -> None:
    from bench.harness import HarnessConfig

    d = HarnessConfig(data=str(DEFAULT_DATA))
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="data folder with train.rec/train.idx/property and *.bin; the default "
                        "folder is generated (synthetic) when missing")
    p.add_argument("--results", default=d.results, help="results root; tables go to "
                   "RESULTS/<data folder name>/")
    p.add_argument("--runs", default=d.runs, help="folder for resume checkpoints")
    p.add_argument("--losses", type=_csv, default=(),
                   help="comma-separated loss names, or 'all' (default: every loss registered "
                        "in both backends, the joint '<margin>+center/ring' objectives included)")
    p.add_argument("--backends", type=_csv, default=d.backends,
                   help="comma-separated subset of pytorch,gluon")
    p.add_argument("--backbone", default=d.backbone, help="backbone name (smallcnn, "
                   "mobilefacenet, iresnet...)")
    p.add_argument("--width", type=int, default=None,
                   help=f"backbone width argument (smallcnn: channels of the first stage; "
                        f"default {DEFAULT_SMALLCNN_WIDTH} for smallcnn, the backbone's own "
                        "default otherwise)")
    p.add_argument("--embedding-size", type=int, default=d.embedding_size)
    p.add_argument("--image-size", type=int, default=d.image_size,
                   help="training/evaluation image side; records are resized by the loader")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="base learning rate (SGD)")
    p.add_argument("--schedule", choices=("step", "poly", "cosine"), default=d.schedule)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--pk", type=int, default=d.pk,
                   help="images per identity in P x K batches (triplet, contrastive)")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="also checkpoint every N steps (0: at epoch ends only)")
    p.add_argument("--no-hybridize", action="store_true",
                   help="run the Gluon backbone imperatively (diagnostics; default: hybridised "
                        "with static_alloc)")
    p.add_argument("--nproc", type=int, default=d.nproc,
                   help="PyTorch processes per cell (torch.distributed with gloo on CPU, DDP "
                        "backbone + sharded Partial-FC head); --batch-size stays the global batch")
    p.add_argument("--sample-rate", type=float, default=d.sample_rate,
                   help="Partial-FC negative-class sampling rate with --nproc > 1 (1 = exact)")
    p.add_argument("--force", action="store_true", help="redo cells already finished")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--difficulty", type=float, default=None,
                   help="difficulty of the generated synthetic set (only when it is generated)")


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
    generate(data, progress=not args.no_progress, **kw)
    return data


def backbone_kwargs(args) -> dict:
    if args.width is not None:
        return {"width": args.width}
    return {"width": DEFAULT_SMALLCNN_WIDTH} if args.backbone == "smallcnn" else {}


def run(args) -> int:
    from bench.harness import HarnessConfig
    from bench.harness import run as run_harness

    data = ensure_data(args)
    cfg = HarnessConfig(
        data=str(data), results=args.results, runs=args.runs, losses=args.losses,
        backends=args.backends, backbone=args.backbone,
        backbone_kwargs=backbone_kwargs(args),
        embedding_size=args.embedding_size, image_size=args.image_size, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, seed=args.seed, pk=args.pk,
        checkpoint_every=args.checkpoint_every, hybridize=not args.no_hybridize,
        nproc=args.nproc, sample_rate=args.sample_rate,
        force=args.force,
        progress=not args.no_progress, plots=not args.no_plots,
        command="python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    cells = run_harness(cfg)
    failed = [c for c in cells if c.get("status") != "ok"]
    for c in failed:
        print(f"FAILED {c['loss']}/{c['backend']}: {c['status']}: {c['message']}",
              file=sys.stderr)
    print(f"{len(cells) - len(failed)}/{len(cells)} cells ok; tables in "
          f"{Path(args.results) / data.name}")
    return 1 if failed else 0
