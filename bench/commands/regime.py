"""The regime study: where (identities x training steps x scale rule) does a margin loss pay
off over softmax? Both backends, paired seeds, on the suite's synthetic faces.

For each identity count, a synthetic set is generated into DATA_ROOT/ids<N> if missing; every
grid point (identities, steps, seed) is one harness run of every loss label x backend
(``bench.regime.grid``), resumable cell by cell: rerun the same command to continue, finished
cells are skipped. Tables and figures go to RESULTS/ (``bench.regime.report``: regime.csv,
versus_softmax.csv, overtake.csv, results.md, ids<N>.png, versus_softmax.png) and are rebuilt
after every grid point; ``--report-only`` rebuilds them from the cells.

The default grid (7 losses, 12 labels with the two scale rules, 3 x 3 points, 3 seeds, both
backends: 648 cells) is sized for about 2 hours of one core; ``--part 1/2`` and ``--part 2/2``
in two processes share it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

NAME = "regime"
HELP = "the regime study: identities x steps x scale rule, where margin losses overtake softmax"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(p) -> None:
    from bench.regime import grid
    from bench.run.options import Toggle, csv_names

    p.add_argument("--identities", default=",".join(map(str, grid.IDENTITIES)),
                   help="training identity counts, one synthetic set each")
    p.add_argument("--steps", default=",".join(map(str, grid.STEPS)),
                   help=f"training budgets in SGD steps of batch {grid.BATCH}")
    p.add_argument("--seeds", type=int, nargs="+", default=list(grid.SEEDS),
                   help="seeds (initial weights, batch order), paired across losses and "
                        "backends")
    p.add_argument("--losses", type=csv_names, default=",".join(grid.LOSSES), metavar="NAMES",
                   help="losses; must include softmax, the reference")
    p.add_argument("--rules", type=csv_names, default=",".join(grid.RULES), metavar="RULES",
                   help="scale rules of the losses that have a scale: paper (the class "
                        "default s) and/or auto (AdaCos' fixed scale for the class count)")
    p.add_argument("--backends", type=csv_names, default="pytorch,gluon", metavar="NAMES",
                   help="comma-separated subset of pytorch,gluon")
    p.add_argument("--difficulty", type=float, default=grid.DIFFICULTY,
                   help="difficulty of the generated synthetic sets")
    p.add_argument("--lr", type=float, default=0.1, help="base learning rate (SGD, cosine)")
    p.add_argument("--data-root", type=Path, default=Path("data/regime"),
                   help="the generated sets go to DATA_ROOT/ids<N>/")
    p.add_argument("--results", type=Path, default=Path("results/regime"),
                   help="tables and figures go here, the cells to RESULTS/cells/")
    p.add_argument("--runs", default="runs", help="folder for resume checkpoints")
    p.add_argument("--models", type=Path, default=Path("models/regime"),
                   help="exported models of the cells")
    p.add_argument("--part", default="1/1", metavar="K/N",
                   help="run part K of N of the grid (start N processes, K = 1..N)")
    p.add_argument("--progress", action=Toggle, default=True, help="progress bars")
    p.add_argument("--plots", action=Toggle, default=True, help="draw the figures")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the tables and figures from finished cells; train nothing")


def _part(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise ValueError(f"--part must be K/N with 1 <= K <= N, got {text!r}")
    return k, n


def _grid(args):
    """(labels, points, {point: HarnessConfig}) of the arguments; raises ValueError naming the
    argument that is wrong."""
    from bench.regime import grid
    from bench.run.options import check as check_config
    from bench.run.options import command_line
    from common import manifest

    identities, steps = _ints(args.identities), _ints(args.steps)
    for name, values, low in (("--identities", identities, 3), ("--steps", steps, 1)):
        if not values or min(values) < low:
            raise ValueError(f"{name} must be integers >= {low}, got {values}")
    if not args.seeds or min(args.seeds) < 0:
        raise ValueError(f"--seeds must be integers >= 0, got {args.seeds}")
    unknown = [n for n in args.losses if n not in manifest.loss_names()]
    if unknown:
        raise ValueError(f"--losses: unknown loss(es) {', '.join(unknown)}; known: "
                         f"{', '.join(manifest.loss_names())}")
    if grid.REFERENCE not in args.losses:
        raise ValueError(f"--losses must include {grid.REFERENCE}, the reference every loss "
                         "is compared against")
    bad = [r for r in args.rules if r not in grid.RULES]
    if bad or not args.rules:
        raise ValueError(f"--rules must be among {', '.join(grid.RULES)}, got "
                         f"{','.join(args.rules)}")
    if not 0 <= args.difficulty <= 3:
        raise ValueError(f"--difficulty must be in [0, 3], got {args.difficulty}")
    labels = grid.labels(args.losses, args.rules)
    points = grid.points(identities, steps, args.seeds)
    command = command_line(skip=("--report-only",))
    configs = {p: grid.harness_config(p, grid.data_dir(args.data_root, p.identities),
                                      args.results, args.runs, args.models, labels,
                                      args.backends, args.progress, command, lr=args.lr)
               for p in points}
    for cfg in configs.values():
        check_config(cfg)
    return labels, points, configs


def check(args) -> None:
    """Every argument checkable without torch or mxnet, before any data is generated."""
    _part(args.part)
    _grid(args)


def ensure_data(root: Path, identities: int, difficulty: float, progress: bool) -> Path:
    """The synthetic set of ``identities``, generated if missing (into a temporary folder
    renamed at the end, so parallel parts never see or write a half-made set)."""
    import json

    from bench.regime import grid

    folder = grid.data_dir(root, identities)
    spec = grid.synthetic_spec(identities, difficulty)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        differs = {k: (made.get(k), v) for k, v in spec.items() if made.get(k) != v}
        if differs:
            raise ValueError(f"{folder} was generated with other settings ({differs}, as "
                             "(found, wanted)); remove it or give another --data-root")
        return folder
    from common.synthetic import generate

    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"generating {folder}: {spec}", flush=True)
    generate(tmp, progress=progress, **spec)
    try:
        tmp.rename(folder)
    except OSError:  # another part made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def run(args) -> int:
    from bench.regime import grid
    from bench.regime import report as regime_report
    from bench.report import results as res

    labels, points, configs = _grid(args)
    meta = {"grid": {"identities": sorted({p.identities for p in points}),
                     "steps": sorted({p.steps for p in points}), "seeds": list(args.seeds),
                     "losses": list(args.losses), "rules": list(args.rules),
                     "labels": labels, "backends": list(args.backends)},
            "recipe": {**grid.BACKBONE, "image_size": grid.IMAGE_SIZE, "batch_size": grid.BATCH,
                       "lr": args.lr, "schedule": "cosine",
                       "warmup_fraction": grid.WARMUP_FRACTION, "momentum": 0.9,
                       "weight_decay": 5e-4, "difficulty": args.difficulty,
                       "images_per_identity": grid.IMAGES_PER_IDENTITY,
                       "heldout_identities": grid.HELDOUT, "pairs": grid.PAIRS},
            "environment": {**res.environment(), "git_commit": res.git_commit()},
            "command": next(iter(configs.values())).command}

    def report():
        return regime_report.write_report(args.results, configs, meta, labels, args.backends,
                                          plots=args.plots)

    if args.report_only:
        print(f"wrote {report()}")
        return 0
    from bench.run.harness import run as run_harness

    mine = grid.part_of(points, _part(args.part))
    failed = 0
    for i, point in enumerate(mine, 1):
        ensure_data(args.data_root, point.identities, args.difficulty, args.progress)
        print(f"== [{i}/{len(mine)}] {point.name}: {len(labels)} losses x "
              f"{len(args.backends)} backends", flush=True)
        started = time.perf_counter()
        cells = run_harness(configs[point], log=lambda line: print(line, flush=True))
        failed += sum(c.get("status") != "ok" for c in cells)
        print(f"== {point.name} done in {time.perf_counter() - started:.0f} s; report "
              f"{report()}", flush=True)
    print(f"wrote {report()}")
    return 1 if failed else 0
