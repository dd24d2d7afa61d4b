"""Fair hyper-parameter tuning, Reality-Check style: an equal search budget per loss, then each
loss's best and default configurations retrained over seeds in both backends.

1. Validation split (``bench.tune.split``): a seeded fraction of the *training* identities is
   carved out into a validation ``val.bin`` (10 folds of pairs) beside the remaining identities,
   relabelled, in SPLIT_ROOT/<set>_val/ (reused while its recorded split matches).
2. Tuning (``--stage tune``; ``bench.tune.study``): one Optuna study per loss in
   RESULTS/tuning/<set>/studies.sqlite, TPE seeded, ``--trials`` finished trials each (failed
   ones count), each trial one harness cell in ``--tune-backend`` on the split, its value the
   validation accuracy. The search space of each loss is ``common/search_space.py``; settings
   given with ``--loss-args`` are fixed and left out of the search. Rerunning the command
   continues every study to its budget; an interrupted trial is redone.
3. Final (``--stage final``; ``bench.tune.final``): per loss, the paper default and the best
   trial's configuration, trained on the full training set in both backends over
   ``--final-seeds`` and evaluated on the test pairs, as harness cells under
   RESULTS/tuning/<set>/final/.
4. Report (``bench.tune.report``): RESULTS/tuning/<set>/results.md, tuning.png and CSVs
   (trials, tuning, results, summary, gap, ranking); ``--report-only`` rebuilds them.

Profile knobs (backbone, image size, embedding, epochs, batch size) default to ``bench real``'s.
Several processes may share one set's studies file when each tunes other losses (``--losses``;
start the second once the split exists); two processes on one loss's study would propose the
same points.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

NAME = "tune"
HELP = "fair tuning: equal Optuna budget per loss on a validation split, then best vs default "\
       "over seeds in both backends"
STAGES = ("all", "tune", "final")


def add_arguments(p) -> None:
    from bench.real.data import DATASETS, DEFAULT_ROOT, DEFAULT_SHARED
    from bench.run.options import add_config_arguments
    from common.backends import BACKENDS

    p.add_argument("--dataset", choices=sorted(DATASETS),
                   help="one of the three real sets (prepared from --shared if missing)")
    p.add_argument("--data", type=Path, default=None,
                   help="instead of --dataset: any prepared InsightFace folder (train.rec/idx, "
                        "property, the test *.bin); its name names the results folder; give "
                        "--epochs and --batch-size")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                   help="folder holding att_faces/, cropped_yale_b/ and lfw/ (sources)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT,
                   help="prepared data sets go to DATA_ROOT/<dataset>/")
    p.add_argument("--split-root", type=Path, default=Path("data/tuning"),
                   help="the validation split goes to SPLIT_ROOT/<dataset>_val/")
    p.add_argument("--stage", choices=STAGES, default="all",
                   help="tune: the studies only; final: retrain best and default configs "
                        "(the studies must exist); all: both")
    p.add_argument("--trials", type=int, default=20,
                   help="search budget per loss: finished trials (complete + failed)")
    p.add_argument("--tune-backend", choices=BACKENDS, default="pytorch",
                   help="the backend the trials train in")
    p.add_argument("--tune-seed", type=int, default=0,
                   help="seed of every trial's initial weights and batch order")
    p.add_argument("--sampler-seed", type=int, default=0,
                   help="seed of the TPE sampler (each trial's: seed * 1000003 + number)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of the training identities carved out for validation")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation split")
    p.add_argument("--val-pairs", type=int, default=1000,
                   help="validation pairs: as many as the carved identities allow, up to this "
                        "(a multiple of 20)")
    p.add_argument("--final-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                   help="seeds of the final retraining (both backends, default and tuned)")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="results root; the studies, tables and final cells go to "
                        "RESULTS/tuning/<dataset>/")
    p.add_argument("--runs", type=Path, default=Path("runs"),
                   help="trial folders and checkpoints go to RUNS/tuning/<dataset>/")
    p.add_argument("--models", type=Path, default=Path("models"),
                   help="the final cells' models go to MODELS/tuning/<dataset>/final/")
    p.add_argument("--width", type=int, default=None,
                   help="backbone width argument (smallcnn: channels of the first stage)")
    add_config_arguments(
        p, ("losses", "loss_args", "backbone", "image_size", "embedding_size", "epochs",
            "batch_size", "lr", "weight_decay", "pk", "flip_test", "progress"),
        defaults={"losses": ("single",), "backbone": "mobilefacenet", "image_size": 32,
                  "embedding_size": 128, "epochs": None, "batch_size": None,
                  "flip_test": False},
        helps={"losses": "comma-separated loss names or labels; 'single' for every registered "
                         "loss but the joint +center/+ring objectives, 'all' for every loss",
               "loss_args": "settings fixed for a loss, left out of its search, "
                            "'LOSS:KEY=VALUE,...;LOSS:...' (e.g. 'arcface:scale=auto'); "
                            "each such loss is its own study",
               "lr": "learning rate of the paper defaults (the trials search it)",
               "weight_decay": "weight decay of the paper defaults (the trials search it)",
               "epochs": "training epochs (default: per data set, bench real's PROFILES)",
               "batch_size": "batch size (default: per data set, bench real's PROFILES)",
               "flip_test": "add the flipped image's embedding at evaluation"})
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the tables and the figure from the studies and final cells; "
                        "train nothing")


def loss_entries(args) -> list[tuple[str, dict]]:
    """(registered name, fixed settings) per study: --losses with --loss-args applied."""
    from bench.commands.real import single_losses
    from bench.run import loss_settings
    from common import manifest

    names = tuple(args.losses)
    if names in ((), ("all",)):
        names = tuple(manifest.loss_names())
    elif names == ("single",):
        names = tuple(single_losses())
    labels = loss_settings.run_labels(names, loss_settings.parse(args.loss_args),
                                      manifest.loss_names())
    return [loss_settings.split(label) for label in labels]


def dataset_name(args) -> str:
    return args.data.name if args.data is not None else args.dataset


def base_config(args, data: Path, command: str = ""):
    """The set's profile config on ``data`` (paper-default lr and weight decay)."""
    from bench.commands.real import PROFILES
    from bench.run.config import HarnessConfig

    profile = PROFILES.get(dataset_name(args), {})
    kwargs = {"input_norm": False} if args.backbone == "mobilefacenet" else {}
    if args.width is not None:
        kwargs["width"] = args.width
    return HarnessConfig(
        data=str(data), losses=(), backbone=args.backbone, backbone_kwargs=kwargs,
        embedding_size=args.embedding_size, image_size=args.image_size,
        epochs=profile["epochs"] if args.epochs is None else args.epochs,
        batch_size=profile["batch_size"] if args.batch_size is None else args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay, pk=args.pk, seed=0, flip_test=args.flip_test,
        progress=args.progress, plots=False, command=command)


def trial_base(args, split_dir: Path, command: str = ""):
    return dataclasses.replace(base_config(args, split_dir, command),
                               backends=(args.tune_backend,), seed=args.tune_seed)


def check(args) -> None:
    """Every argument checkable without torch, mxnet or optuna, before any data is prepared."""
    from bench.commands.real import check_data_choice
    from bench.run.options import check as check_config
    from bench.tune.split import SplitSpec
    from common import search_space

    check_data_choice(args)
    if args.trials < 1:
        raise ValueError(f"--trials must be an integer >= 1, got {args.trials}")
    for flag in ("tune_seed", "sampler_seed"):
        if getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be an integer >= 0, got "
                             f"{getattr(args, flag)}")
    if not args.final_seeds or min(args.final_seeds) < 0 or \
            len(set(args.final_seeds)) != len(args.final_seeds):
        raise ValueError(f"--final-seeds must be distinct integers >= 0, got {args.final_seeds}")
    if args.width is not None and args.width < 1:
        raise ValueError(f"--width must be an integer >= 1, got {args.width}")
    SplitSpec(args.val_fraction, args.split_seed, args.val_pairs).check()
    cfg = base_config(args, Path(args.data or args.dataset))
    check_config(dataclasses.replace(cfg, backends=(args.tune_backend,)))
    for name, fixed in loss_entries(args):
        search_space.space(name, fixed)  # every loss has a space (a new one needs an entry)


def run(args) -> int:
    from bench.real import data as real_data
    from bench.report import results as res
    from bench.run.config import hashed
    from bench.run.harness import config_family_hash
    from bench.run.options import command_line
    from bench.tune import final as final_stage
    from bench.tune import report, split, study

    command = command_line(skip=("--report-only",))
    data, source = real_data.resolve(args.data, args.dataset, args.shared, args.data_root,
                                     progress=args.progress)
    dataset = data.name
    out = Path(args.results) / "tuning" / dataset
    split_dir = Path(args.split_root) / f"{dataset}_val"
    storage_path = out / study.STUDY_FILE
    study.quiet_optuna()
    storage = study.open_storage(storage_path)
    spec = split.SplitSpec(args.val_fraction, args.split_seed, args.val_pairs)
    entries = loss_entries(args)
    tunings = []
    if args.stage in ("all", "tune") and not args.report_only:
        record = split.summary(split.prepare_split(data, split_dir, spec))
        print(f"validation split {split_dir}: {record['val_identities']} of "
              f"{record['identities']} identities carved, {record['pairs']} pairs", flush=True)
        tunings = [study.Tuning(name, fixed, trial_base(args, split_dir, command),
                                Path(args.runs) / "tuning" / dataset / "trials", record,
                                args.sampler_seed) for name, fixed in entries]
    final = final_stage.Final(
        base_config(args, data, command), out / "final",
        Path(args.runs) / "tuning" / dataset / "final",
        Path(args.models) / "tuning" / dataset / "final", tuple(args.final_seeds))

    def studies() -> dict:
        found = {}
        for name, fixed in entries:
            s = study.load_study(storage, study.study_name(name, fixed))
            if s is not None:
                found[s.study_name] = s
        return found

    def final_entries(found: dict) -> list:
        out_entries = []
        for name, fixed in entries:
            sname = study.study_name(name, fixed)
            s = found.get(sname)
            out_entries.append(final_stage.Entry(name, dict(fixed), sname,
                                                 study.best_point(s) if s else None))
        return out_entries

    def write() -> Path:
        found = studies()
        protocols = [s.user_attrs.get("protocol", {}) for s in found.values()]
        split_record = next((p["split"] for p in protocols if p.get("split")),
                            tunings[0].split if tunings else {})
        meta = {"dataset": dataset, "data": source, "split": split_record or {
                    k: "?" for k in ("val_identities", "identities", "fraction", "seed",
                                     "pairs", "train_identities")},
                "budget": args.trials, "tune_backend": args.tune_backend,
                "tune_seed": args.tune_seed, "sampler_seed": args.sampler_seed,
                "final_seeds": list(args.final_seeds),
                "trial_config": hashed(trial_base(args, split_dir)),
                "final_config": hashed(final.base), "storage": str(storage_path),
                "environment": res.environment(), "command": command}
        return report.write_report(out, dataset, final_entries(found), found, final, meta,
                                   config_family_hash)

    if args.report_only:
        print(f"wrote {write()}")
        return 0
    from bench.run.harness import run as run_harness

    def log(line: str) -> None:
        print(line, flush=True)

    for t in tunings:
        s = study.tune(t, storage, args.trials, run_harness, log=log, command=command)
        c = study.counts(s)
        print(f"[tune] {t.name}: {c['complete']} complete, {c['failed']} failed of "
              f"{args.trials}; best {s.best_value if c['complete'] else 'none'}", flush=True)
        write()
    failed = 0
    if args.stage in ("all", "final"):
        found = studies()
        ready = final_entries(found)
        for e in ready:
            s = found.get(e.study)
            have = study.finished(s) if s is not None else 0
            if have < args.trials:
                print(f"warning: study {e.study} has {have} of {args.trials} finished trials "
                      + ("(run --stage tune first); " if s is None else "; ")
                      + ("its default only is retrained" if e.point is None
                         else "its best so far is retrained"), file=sys.stderr, flush=True)

        def cell_log(line: str) -> None:
            print(line, flush=True)
            if line.startswith(("[ok]", "[nonfinite]", "[error]")):
                try:
                    write()
                except (ValueError, OSError, KeyError) as exc:  # a table bug must not stop it
                    print(f"warning: report not rebuilt: {type(exc).__name__}: {exc}",
                          file=sys.stderr, flush=True)

        failed = final_stage.run_final(final, ready, run_harness, log=cell_log)
    print(f"wrote {write()}")
    return 1 if failed else 0
