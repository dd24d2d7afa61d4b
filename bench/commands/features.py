"""Feature-space figure: train each loss with a 2-D and a 3-D (normalised) embedding on a few
identities, both backends side by side; writes RESULTS/<data>/features_2d.png and
features_3d.png. The default data set is generated when missing, as for ``run``."""

from __future__ import annotations

NAME = "features"
HELP = "2-D / 3-D learned-feature figure per loss and backend (the classic papers' figure)"


def add_arguments(p) -> None:
    from bench.commands.run import DEFAULT_DATA
    from bench.features import CLASSIC

    p.add_argument("--data", default=str(DEFAULT_DATA), help="data folder (as for run)")
    p.add_argument("--results", default="results", help="results root")
    p.add_argument("--losses", default=",".join(CLASSIC),
                   help="comma-separated loss names")
    p.add_argument("--backends", default="pytorch,gluon", help="subset of pytorch,gluon")
    p.add_argument("--identities", type=int, default=8, help="training identities to use")
    p.add_argument("--dims", default="2,3", help="embedding sizes to draw (2 and/or 3)")
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--width", type=int, default=8, help="smallcnn width")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=None,
                   help="difficulty of the generated synthetic set (only when generated)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from bench import features
    from bench.commands.run import _csv, ensure_data
    from bench.harness import HarnessConfig

    dims = tuple(int(d) for d in _csv(args.dims))
    bad = [d for d in dims if d not in (2, 3)]
    if bad:
        raise ValueError(f"--dims must be 2 and/or 3, got {args.dims!r}")
    data = ensure_data(args)
    cfg = HarnessConfig(
        data=str(data), results=args.results, losses=_csv(args.losses),
        backends=_csv(args.backends), backbone_kwargs={"width": args.width},
        image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, warmup_epochs=1.0, progress=not args.no_progress,
    )
    for path in features.run(cfg, args.identities, dims):
        print(f"[plot] {path}")
    return 0
