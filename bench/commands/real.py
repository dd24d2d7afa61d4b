"""Real faces (AT&T/ORL, Cropped Extended Yale B, LFW View 1): every loss x both backends over
several seeds, with the backend gap tested.

For each seed: prepares the data set if missing (``bench.real.data``: the suite's converters
over ``--shared``), then runs the comparison harness (``bench.run.harness``: identical initial
weights and batches in both backends) into ``RESULTS/<dataset>/seed<k>/``, and rebuilds the
report after every cell (``bench.real.report``): results.csv (a row per loss, backend, seed),
gap.csv (paired torch - gluon gap with a 95 % t-interval, McNemar's exact test), mcnemar.csv,
ranking.csv (ties where intervals overlap), results.md and curves.png under RESULTS/<dataset>/.

Resumes: finished cells are skipped, an interrupted cell restarts from its last epoch
checkpoint in RUNS/, so a long comparison can be completed in several sittings by rerunning the
same command. ``--report-only`` rebuilds the tables from the cells without training. The tables
always cover every seed that has cells under RESULTS/<dataset>/ (besides ``--seeds``), so two
processes running one seed each both keep the combined tables whole.
"""

from __future__ import annotations

import sys
from pathlib import Path

NAME = "real"
HELP = "real faces (att_faces, cropped_yale_b, lfw_view1): all losses x both backends x seeds"


def single_losses() -> list[str]:
    """The default: every registered loss except the joint "<margin>+<aux>" objectives, which
    combine two losses measured here on their own (``--losses all`` adds the 20 of them)."""
    from common import manifest

    return [n for n in manifest.loss_names() if "+" not in n]


# Per data set: epochs and batch size sized (with the backbone defaults below) for one seed of
# the 15 single losses x 2 backends in <= 60 min on 2 free cores; see results/real_data.md.
PROFILES = {
    "att_faces": {"epochs": 15, "batch_size": 32},
    "cropped_yale_b": {"epochs": 4, "batch_size": 64},
    "lfw_view1": {"epochs": 2, "batch_size": 64},
}


def add_arguments(p) -> None:
    from bench.real.data import DATASETS, DEFAULT_ROOT, DEFAULT_SHARED
    from bench.run.options import add_config_arguments

    p.add_argument("--dataset", choices=sorted(DATASETS),
                   help="one of the three real sets (prepared from --shared if missing)")
    p.add_argument("--data", type=Path, default=None,
                   help="instead of --dataset: any prepared InsightFace folder (train.rec/idx, "
                        "property, *.bin such as lfw.bin, cfp_fp.bin, agedb_30.bin); its name "
                        "names the results folder; give --epochs and --batch-size")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds to run, one harness pass each (initial weights, batch order)")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                   help="folder holding att_faces/, cropped_yale_b/ and lfw/ (sources)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT,
                   help="prepared data sets go to DATA_ROOT/<dataset>/")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results root; tables go to RESULTS/<dataset>/, cells to "
                        "RESULTS/<dataset>/seed<k>/")
    p.add_argument("--runs", default="runs", help="folder for resume checkpoints")
    p.add_argument("--models", type=Path, default=Path("models"),
                   help="exported models go to MODELS/<dataset>/seed<k>/<dataset>/<cell>/")
    add_config_arguments(
        p, ("losses", "loss_args", "backbone", "image_size", "embedding_size", "epochs",
            "batch_size", "lr", "flip_test", "progress"),
        defaults={"losses": ("single",), "backbone": "mobilefacenet", "image_size": 32,
                  "embedding_size": 128, "epochs": None, "batch_size": None,
                  "flip_test": False},
        helps={"losses": "comma-separated loss names; 'single' for every registered loss but "
                         "the joint +center/+ring objectives, 'all' for every loss registered "
                         "in both backends",
               "epochs": "training epochs (default: per data set, PROFILES in this module)",
               "batch_size": "batch size (default: per data set, PROFILES)",
               "flip_test": "add the flipped image's embedding at evaluation (doubles its "
                            "cost)"})
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the tables and curves from finished cells; train nothing")


def check_data_choice(args) -> None:
    """Exactly one of --dataset and --data; a --data folder exists and, without a profile,
    comes with --epochs and --batch-size (``real`` and ``tune``)."""
    from bench.run.options import check_data

    if (args.dataset is None) == (args.data is None):
        raise ValueError("give exactly one of --dataset (att_faces, cropped_yale_b, lfw_view1) "
                         "and --data (a prepared InsightFace folder)")
    if args.data is not None:
        check_data(args.data)
        if args.data.name not in PROFILES and (args.epochs is None or args.batch_size is None):
            raise ValueError(f"--data {args.data}: give --epochs and --batch-size (no profile "
                             f"for {args.data.name!r})")


def check(args) -> None:
    """Every argument checkable without torch or mxnet, before any data is prepared."""
    from bench.run.options import check as check_config

    check_data_choice(args)
    data = args.data or Path(args.dataset)
    for seed in args.seeds:
        check_config(harness_config(args, data, seed, "", results=args.results))
    check_results_folder(args, data)


def check_results_folder(args, data: Path) -> None:
    """Refuse a run whose settings differ from the cells already in RESULTS/<dataset>/: its
    tables would replace theirs (issue 29). Another --results folder keeps both."""
    from bench.real.report import cells_dir, seeds_on_disk
    from bench.report.results import configs_in
    from bench.run.config import hashed

    for seed in sorted(set(args.seeds) | set(seeds_on_disk(args.results, data.name))):
        want = hashed(harness_config(args, data, seed, "", results=args.results))
        folder = cells_dir(args.results, data.name, seed)
        for held in configs_in(folder):
            if held != want:
                differ = sorted(k for k in set(held) | set(want) if held.get(k) != want.get(k))
                raise ValueError(
                    f"{folder} holds cells of another configuration (differing in "
                    f"{', '.join(differ)}: {', '.join(f'{k}={held.get(k)!r}' for k in differ)} "
                    f"there); give another --results folder so that its tables are kept")


def _loss_list(names) -> tuple[str, ...]:
    """--losses as the harness takes it: () means every registered loss."""
    if tuple(names) in ((), ("all",)):
        return ()
    if tuple(names) == ("single",):
        return tuple(single_losses())
    return tuple(names)


def harness_config(args, data: Path, seed: int, command: str, results: Path | None = None):
    """One seed's ``HarnessConfig``; ``results``: its cells' folder (default: the seed's)."""
    from bench.run.config import HarnessConfig
    from bench.run.loss_settings import parse

    if results is None:
        from bench.real.report import seed_dir

        results = seed_dir(args.results, data.name, seed)

    profile = PROFILES.get(data.name, {})
    losses = _loss_list(args.losses)
    # MobileFaceNet normalises raw 0..255 input inside its graph by default; the harness feeds
    # images already normalised by common.images.normalize, so that step is switched off
    kwargs = {"input_norm": False} if args.backbone == "mobilefacenet" else {}
    return HarnessConfig(
        data=str(data), results=str(results), runs=args.runs,
        models=str(Path(args.models) / data.name / f"seed{seed}"),
        losses=losses, backbone=args.backbone, backbone_kwargs=kwargs,
        embedding_size=args.embedding_size, image_size=args.image_size,
        epochs=args.epochs or profile["epochs"],
        batch_size=args.batch_size or profile["batch_size"], lr=args.lr, seed=seed,
        flip_test=args.flip_test, progress=args.progress, plots=False, command=command,
        loss_args=parse(args.loss_args))


def run(args) -> int:
    from bench.real import data as real_data
    from bench.real import report as real_report
    from bench.report import results as res
    from bench.run import loss_settings
    from bench.run.harness import config_family_hash
    from bench.run.options import command_line
    from common import manifest

    # the command that trains these cells (a --report-only rebuild names the training command)
    command = command_line(skip=("--report-only",))
    data, source = real_data.resolve(args.data, args.dataset, args.shared, args.data_root,
                                     progress=args.progress)
    dataset = data.name
    cfgs = {s: harness_config(args, data, s, command) for s in args.seeds}
    # the tables cover every seed with cells here, not only this run's: a run of one seed
    # (e.g. two processes, one seed each) must not drop the others from the combined tables
    shown = sorted(set(args.seeds) | set(real_report.seeds_on_disk(args.results, dataset)))
    hashes = {s: config_family_hash(cfgs.get(s) or harness_config(args, data, s, command))
              for s in shown}
    first = next(iter(cfgs.values()))
    losses = tuple(loss_settings.run_labels(first.losses, first.loss_args, manifest.loss_names()))
    from bench.run.config import hashed

    config = {k: v for k, v in hashed(first).items() if k != "seed"}
    meta = {"config": {**config, "losses": list(first.losses) or "all",
                       **({"loss_args": first.loss_args} if first.loss_args else {})},
            "seeds": shown, "seeds_run": list(args.seeds), "dataset": dataset,
            "data": source, "environment": res.environment(),
            "command": command}

    def report():
        return real_report.write_report(args.results, dataset, hashes, meta, losses)

    if args.report_only:
        print(f"wrote {report()}")
        print(real_report.summary_line(args.results, dataset))
        return 0
    from bench.run.harness import run as run_harness

    def log(line: str) -> None:
        print(line, flush=True)
        if not line.startswith(("[skip]", "[plot]")):
            try:
                report()
            except (ValueError, OSError, KeyError) as exc:  # a table bug must not stop training
                print(f"warning: report not rebuilt: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)

    failed = 0
    for seed, cfg in cfgs.items():
        print(f"== {dataset} seed {seed}: {cfg.backbone} {cfg.image_size}px, "
              f"{cfg.epochs} epochs, batch {cfg.batch_size}", flush=True)
        cells = run_harness(cfg, log=log)
        failed += sum(c.get("status") != "ok" for c in cells)
    md = report()
    print(f"wrote {md}")
    print(real_report.summary_line(args.results, dataset))
    return 1 if failed else 0
