"""Feature-space figure: train each loss with a 2-D and a 3-D (normalised) embedding on a few
identities, both backends side by side; writes RESULTS/<data>/features_2d.png and
features_3d.png. The default data set is generated when missing, as for ``run``."""

from __future__ import annotations

# the losses of the classic papers' feature figures
CLASSIC = ("softmax", "l2softmax", "normface", "sphereface", "cosface", "arcface", "combined",
           "center", "ring", "triplet", "contrastive")

NAME = "features"
HELP = "2-D / 3-D learned-feature figure per loss and backend (the classic papers' figure)"


def add_arguments(p) -> None:
    from bench.commands.run import DEFAULT_DATA
    from bench.run.options import add_config_arguments

    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="data folder (as for run: the default folder is generated when missing)")
    add_config_arguments(
        p, ("results", "losses", "backends", "image_size", "epochs", "batch_size", "lr", "seed",
            "progress"),
        defaults={"losses": CLASSIC, "epochs": 12, "batch_size": 32, "lr": 0.05},
        helps={"losses": "comma-separated loss names"})
    p.add_argument("--identities", type=int, default=8, help="training identities to use")
    p.add_argument("--dims", default="2,3", help="embedding sizes to draw (2 and/or 3)")
    p.add_argument("--width", type=int, default=8, help="smallcnn width")
    p.add_argument("--difficulty", type=float, default=None,
                   help="difficulty of the generated synthetic set (only when generated)")


def _dims(args) -> tuple[int, ...]:
    from bench.run.options import csv_names

    try:
        dims = tuple(int(d) for d in csv_names(args.dims))
    except ValueError:
        dims = ()
    if not dims or any(d not in (2, 3) for d in dims):
        raise ValueError(f"--dims must be 2 and/or 3, got {args.dims!r}")
    return dims


def config(args, data):
    from bench.run.options import config_from_args

    return config_from_args(args, data=str(data), backbone_kwargs={"width": args.width},
                            warmup_epochs=1.0)


def check(args) -> None:
    """Every argument checkable without torch or mxnet, before any data is generated."""
    from bench.commands.run import DEFAULT_DATA
    from bench.run.options import check as check_config
    from bench.run.options import check_data

    _dims(args)
    if args.identities < 2 or args.width < 1:
        raise ValueError(f"--identities must be >= 2 and --width >= 1, got {args.identities} "
                         f"and {args.width}")
    check_config(config(args, args.data))
    check_data(args.data, generated=DEFAULT_DATA)


def run(args) -> int:
    from bench.commands.run import ensure_data
    from bench.run import features

    dims = _dims(args)
    data = ensure_data(args)
    for path in features.run(config(args, data), args.identities, dims):
        print(f"[plot] {path}")
    return 0
