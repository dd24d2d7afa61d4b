"""Multi-process PyTorch training: 1 vs N processes on the same cells, or the torchrun worker.

Stand-alone, it compares one process with ``--nproc`` spawned ranks on the same cells (same
seed, weights and global batches; the spread over ``--seeds`` is the noise) and prints a
Markdown table (``--json`` also writes it)::

    python -m bench scale-out --data data/synthetic --losses softmax,arcface --nproc 2

Under torchrun (RANK/WORLD_SIZE set) every rank trains each loss and rank 0 writes the cells::

    torchrun --nproc_per_node 8 -m bench scale-out --data DATA --losses arcface --out results/x
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

NAME = "scale-out"
HELP = "PyTorch on N processes: compare 1 vs N on the same cells, or run as the torchrun worker"


def _csv(text: str) -> list[str]:
    from bench.run.options import csv_names

    names = list(csv_names(text))
    return [] if names == ["all"] else names


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="data folder (train.rec, property, *.bin)")
    p.add_argument("--losses", type=_csv, default="all",
                   help="comma-separated loss names, or 'all'")
    p.add_argument("--nproc", type=int, default=2, help="processes of the distributed run")
    p.add_argument("--sample-rate", type=float, default=1.0,
                   help="Partial-FC negative-class sampling rate (1 = exact)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs per cell")
    p.add_argument("--batch-size", type=int, default=64, help="global batch")
    p.add_argument("--image-size", type=int, default=48, help="training/evaluation image side")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=3, help="compare mode: seeds per setting")
    p.add_argument("--runs", default="runs", help="folder for resume checkpoints (torchrun)")
    p.add_argument("--out", default="results/scale_out", help="results folder (torchrun)")
    p.add_argument("--json", type=Path, default=None,
                   help="compare mode: also write the rows here (and the table beside it, .md)")


def check(args) -> None:
    """Every argument checkable without torch or mxnet."""
    from bench.run.options import check as check_config
    from bench.run.options import check_data

    if args.nproc < 1 or args.seeds < 1:
        raise ValueError(f"--nproc and --seeds must be >= 1, got {args.nproc} and {args.seeds}")
    check_config(_config(args))
    check_data(args.data)


def _config(args):
    from bench.run.config import HarnessConfig
    from bench.run.options import command_line

    # the comparison exports no model; the preflight's models folder goes beside the checkpoints
    return HarnessConfig(data=args.data, results=args.out, runs=args.runs,
                         models=str(Path(args.runs) / "models"),
                         losses=tuple(args.losses), backends=("pytorch",),
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         image_size=args.image_size, progress=False, plots=False,
                         command=command_line())


def _prepare(cfg):
    from bench.run import harness
    from bench.run.data import train_images, verification_sets

    data, bins, losses = harness.preflight(cfg)
    return (data.name, losses, train_images(data, cfg.image_size),
            verification_sets(bins, cfg.image_size), harness.family_hash(cfg, data, bins))


def _line(cell: dict, label: str) -> dict:
    t = cell["history"]["timing"] if cell.get("history") else {}
    ev = {k: v["acc_mean"] for k, v in cell.get("final_eval", {}).items()}
    return {"loss": cell["loss"], "run": label, "status": cell["status"], "acc": ev,
            "train_loss": (cell["history"]["epochs"][-1]["train_loss"]
                           if cell.get("history") else float("nan")),
            "img_per_s": t.get("images", 0) / t["seconds"] if t.get("seconds") else 0.0,
            "wall_s": t.get("wall_seconds", float("nan"))}


def compare(args) -> list[dict]:
    """Every loss, ``--seeds`` seeds: one process vs ``nproc`` ranks, same seed for both.

    A seed's two runs share initial weights and batches, so their difference is the effect of
    distributing alone; the spread over seeds of the single-process accuracy is the noise.
    """
    from bench.report import results as res
    from bench.run import cell as cells
    from bench.run import distributed

    cfg = _config(args)
    dataset, losses, train, targets, family = _prepare(cfg)
    rows = []
    runs = [(label, cfg.seed + k, n) for k in range(args.seeds)
            for label, n in (("1 proc", 1), (f"{args.nproc} proc", args.nproc))]
    for loss in losses:
        for label, seed, nproc in runs:
            with tempfile.TemporaryDirectory(prefix="scale-") as tmp:  # no resume here
                c = dataclasses.replace(cfg, seed=seed, runs=tmp, nproc=nproc,
                                        sample_rate=args.sample_rate if nproc > 1 else 1.0)
                h = res.config_hash({"family": family, "loss": loss, "seed": seed,
                                     "nproc": nproc})
                runner = distributed.run_cell if nproc > 1 else cells.run_cell
                cell = runner(c, dataset, loss, "pytorch", train, targets, h, h)
            rows.append({**_line(cell, label), "seed": seed, "nproc": nproc})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def torchrun_worker(args) -> int:
    """Entry under torchrun: every rank trains each loss; rank 0 writes the cells."""
    from bench.report import results as res
    from bench.run import cell as cells
    from bench.run.distributed import train_rank
    from pytorch_impl.distributed import destroy_process_group, init_process_group

    cfg = _config(args)
    ctx = init_process_group()
    try:
        dataset, losses, train, targets, family = _prepare(cfg)
        for loss in losses:
            h = res.config_hash({"family": family, "loss": loss, "nproc": ctx.world_size})
            cell = train_rank(ctx, cfg, dataset, loss, train, targets, h, h, args.sample_rate)
            # finished (or stopped on NaN, identically on every rank): no resume needed
            cells.checkpoint_path(cfg, dataset, loss, "pytorch", h, ctx.world_size,
                                  ctx.rank).unlink(missing_ok=True)
            if cell is not None:
                cell.pop("_results", None)
                res.write_json(res.cell_path(Path(cfg.results) / dataset, loss, "pytorch"),
                               cell)
                print(json.dumps(_line(cell, f"{ctx.world_size} proc")), flush=True)
    finally:
        destroy_process_group()
    return 0


def run(args) -> int:
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return torchrun_worker(args)
    rows = compare(args)
    text = comparison_markdown(rows, _config(args).command, args.nproc)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": _config(args).command, "rows": rows},
                                        indent=1))
        args.json.with_suffix(".md").write_text(text)
    return 0


def comparison_markdown(rows: list[dict], command: str, nproc: int) -> str:
    """Per loss and target: mean +- std accuracy over seeds, 1 vs N processes, paired diff."""
    import statistics as st

    from bench.report.tables import markdown_lines

    table = []
    for loss in dict.fromkeys(r["loss"] for r in rows):
        mine = [r for r in rows if r["loss"] == loss and r["status"] == "ok"]
        for target in sorted({t for r in mine for t in r["acc"]}):
            one = {r["seed"]: r["acc"][target] for r in mine if r["nproc"] == 1}
            many = {r["seed"]: r["acc"][target] for r in mine if r["nproc"] == nproc}
            diffs = [many[s] - one[s] for s in one if s in many]
            if len(one) < 2 or not diffs:
                continue
            table.append([
                loss, target,
                f"{st.mean(one.values()):.4f} +- {st.stdev(one.values()):.4f} ({len(one)})",
                f"{st.mean(many.values()):.4f} +- "
                f"{st.stdev(many.values()) if len(many) > 1 else float('nan'):.4f}",
                f"{st.mean(diffs):+.4f}", f"{max(abs(d) for d in diffs):.4f}"])
    lines = [f"# Verification accuracy, 1 process vs {nproc} processes", "",
             f"Command: `{command}`", ""]
    lines += markdown_lines(["loss", "target", "1 proc mean +- std (seeds)",
                             f"{nproc} proc mean +- std", "paired diff mean",
                             "max abs paired diff"], table)
    failed = [f"{r['loss']} ({r['run']}, seed {r['seed']}): {r['status']}" for r in rows
              if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed: " + "; ".join(failed)]
    return "\n".join(lines) + "\n"
