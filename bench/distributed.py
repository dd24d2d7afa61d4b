"""Multi-process PyTorch cells: the launcher behind ``python -m bench run --nproc N``.

``run_cell(cfg, dataset, loss, "pytorch", data, targets, family_hash, cell_hash, nproc=N)`` has
the signature of ``bench.harness.run_cell`` and returns the same cell record: it spawns N ranks
(``torch.multiprocessing``, gloo on CPU / nccl with one GPU per rank), each trains with
``pytorch_impl.distributed_train.DistributedTrainer`` on its slice of every global batch
(``DistributedBatchSampler``; same global batch size, seed, weights and LR schedule as the
single-process cell), rank 0 evaluates and writes the record. Checkpoints are per rank
(``...-<hash>.nprocN.rankR.ckpt.npz``): a resume needs the same N.

Under torchrun (RANK/WORLD_SIZE set) this module is itself the worker::

    torchrun --nproc_per_node 8 -m bench.distributed --data DATA --losses arcface --out results/x

Stand-alone, it compares 1 vs N processes on the same cells (the results/scale_out note)::

    python -m bench.distributed --data data/synthetic --losses softmax,arcface --nproc 2
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shlex
import socket
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint_path(cfg, dataset: str, loss_name: str, cell_hash: str, nproc: int,
                    rank: int) -> Path:
    # matches the harness's clean-up glob "<loss>__pytorch-*.ckpt.npz"
    stem = f"{loss_name.replace('+', '_plus_')}__pytorch-{cell_hash}.nproc{nproc}.rank{rank}"
    return Path(cfg.runs) / dataset / f"{stem}.ckpt.npz"


def train_rank(ctx, cfg, dataset: str, loss_name: str, data: tuple, targets: dict,
               family_hash: str, cell_hash: str, sample_rate: float = 1.0) -> dict | None:
    """One rank's part of a cell (process group already up); the cell record on rank 0."""
    import torch.distributed as dist

    from bench import harness
    from common.images import make_batch
    from common.sampler import EpochSampler
    from common.schedule import build_schedule
    from common.trainloop import NonFiniteError, fit
    from pytorch_impl.distributed import DistributedBatchSampler
    from pytorch_impl.distributed_train import DistributedTrainer

    images, labels, num_classes = data
    cell = {"dataset": dataset, "loss": loss_name, "backend": "pytorch",
            "config": harness._hashed(cfg), "config_hash": cell_hash,
            "family_hash": family_hash, "targets": sorted(targets),
            "nproc": ctx.world_size, "sample_rate": sample_rate}
    params, lstate = harness.initial_state(cfg, loss_name, num_classes)
    single = harness.build_trainer("pytorch", cfg, loss_name, num_classes, params, lstate)
    trainer = DistributedTrainer(single.backbone, single.loss, ctx, momentum=cfg.momentum,
                                 weight_decay=cfg.weight_decay, sample_rate=sample_rate,
                                 seed=cfg.seed)
    del single
    pk = cfg.pk if getattr(trainer.loss.replicated, "requires_pk_batches", False) else None
    sampler = DistributedBatchSampler(EpochSampler(labels, cfg.batch_size, cfg.seed, pk=pk),
                                      ctx.rank, ctx.world_size)
    schedule = build_schedule(cfg.schedule, cfg.lr, cfg.epochs, len(sampler),
                              warmup_epochs=cfg.warmup_epochs)
    evaluate, last_full = harness.make_evaluator(cfg, targets)

    ckpt = checkpoint_path(cfg, dataset, loss_name, cell_hash, ctx.world_size, ctx.rank)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    lead = ctx.rank == 0
    started = time.perf_counter()
    try:
        history = fit(trainer, sampler, labels,
                      lambda idx, flips: make_batch(images[idx], flips), schedule, cfg.epochs,
                      checkpoint=ckpt, evaluate=evaluate if lead else None,
                      checkpoint_every=cfg.checkpoint_every, progress=cfg.progress and lead,
                      desc=f"{loss_name}/pytorch x{ctx.world_size}")
    except NonFiniteError as exc:  # the loss is global: every rank stops at the same step
        cell.update(status="nonfinite", message=str(exc), history=None, final_eval={})
        return cell if lead else None
    if lead and not last_full:
        evaluate(trainer.embed)
    # fit counts this rank's images; the record reports the global batch's
    import torch

    total = torch.tensor([history["timing"]["images"]], dtype=torch.float64)
    dist.all_reduce(total)
    if not lead:
        return None
    history["timing"]["images"] = int(total.item())
    cell.update(status="ok", message="", history=history,
                final_eval={name: harness._summary(r) for name, r in last_full.items()},
                cell_seconds=time.perf_counter() - started)
    cell["_results"] = dict(last_full)  # as harness.run_cell: full results for the .npz
    return cell


def _spawned(rank, nproc, port, threads, args, out):
    import torch

    torch.set_num_threads(threads)
    from pytorch_impl.distributed import destroy_process_group, init_process_group

    ctx = init_process_group(rank, nproc, init_method=f"tcp://127.0.0.1:{port}")
    try:
        cell = train_rank(ctx, *args)
        if cell is not None:  # pickle: the record carries VerificationResult objects
            Path(out).write_bytes(pickle.dumps(cell))
    finally:
        destroy_process_group()


def run_cell(cfg, dataset: str, loss_name: str, backend: str, data: tuple, targets: dict,
             family_hash: str, cell_hash: str, nproc: int | None = None,
             sample_rate: float | None = None) -> dict:
    """``harness.run_cell`` on ``nproc`` ranks (default ``cfg.nproc``); see the module doc."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    nproc = int(nproc if nproc is not None else getattr(cfg, "nproc", 2))
    rate = float(sample_rate if sample_rate is not None else getattr(cfg, "sample_rate", 1.0))
    if backend != "pytorch":
        raise ValueError(f"run_cell: nproc > 1 runs the pytorch backend only, got {backend!r}")
    if nproc < 1 or nproc > cfg.batch_size:
        raise ValueError(f"run_cell: nproc must be in [1, batch_size={cfg.batch_size}], "
                         f"got {nproc}")
    # ranks share the cores: split the thread budget instead of oversubscribing
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)) // nproc)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.json"
        args = (cfg, dataset, loss_name, data, targets, family_hash, cell_hash, rate)
        try:
            mp.spawn(_spawned, args=(nproc, _free_port(), threads, args, str(out)),
                     nprocs=nproc, join=True)
        except ProcessException as exc:  # the harness records RuntimeError cells, goes on
            raise RuntimeError(f"run_cell: rank {exc.error_index} of {nproc} failed "
                               f"({loss_name}): {exc}") from exc
        return pickle.loads(out.read_bytes())


# ---- command line: torchrun worker, or the 1-vs-N comparison ---------------------------------

def _config(args):
    from bench.harness import HarnessConfig

    return HarnessConfig(data=args.data, results=args.out, runs=args.runs,
                         losses=tuple(args.losses), backends=("pytorch",),
                         epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                         image_size=args.image_size, progress=False, plots=False,
                         command="python -m bench.distributed " + " ".join(
                             shlex.quote(a) for a in sys.argv[1:]))


def _prepare(cfg):
    from bench import harness
    from bench import results as res

    data, bins, losses = harness.preflight(cfg)
    family = {**harness._hashed(cfg), "data": harness.data_fingerprint(data, bins)}
    train = harness.train_images(data, cfg.image_size)
    targets = harness.verification_sets(bins, cfg.image_size)
    return data.name, losses, train, targets, family, res


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

    The spread over seeds of the single-process accuracy is the noise; a seed's two runs share
    initial weights and batches, so their difference is the effect of distributing alone.
    """
    import dataclasses

    from bench import harness

    cfg = _config(args)
    dataset, losses, train, targets, family, res = _prepare(cfg)
    rows = []
    runs = [(label, cfg.seed + k, n) for k in range(args.seeds)
            for label, n in (("1 proc", 1), (f"{args.nproc} proc", args.nproc))]
    for loss in losses:
        for label, seed, nproc in runs:
            with tempfile.TemporaryDirectory(prefix="scale-") as tmp:  # no resume here
                c = dataclasses.replace(cfg, seed=seed, runs=tmp)
                h = res.config_hash({**family, "loss": loss, "seed": seed, "nproc": nproc})
                if nproc == 1:
                    cell = harness.run_cell(c, dataset, loss, "pytorch", train, targets, h, h)
                else:
                    cell = run_cell(c, dataset, loss, "pytorch", train, targets, h, h,
                                    nproc=nproc, sample_rate=args.sample_rate)
            rows.append({**_line(cell, label), "seed": seed, "nproc": nproc})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def torchrun_worker(args) -> int:
    """Entry under torchrun: every rank trains each loss; rank 0 writes the cells."""
    from pytorch_impl.distributed import destroy_process_group, init_process_group

    cfg = _config(args)
    ctx = init_process_group()
    try:
        dataset, losses, train, targets, family, res = _prepare(cfg)
        for loss in losses:
            h = res.config_hash({**family, "loss": loss, "nproc": ctx.world_size})
            cell = train_rank(ctx, cfg, dataset, loss, train, targets, h, h, args.sample_rate)
            # finished (or stopped on NaN, identically on every rank): no resume needed
            checkpoint_path(cfg, dataset, loss, h, ctx.world_size, ctx.rank).unlink(
                missing_ok=True)
            if cell is not None:
                cell.pop("_results", None)
                path = res.cell_path(Path(cfg.results) / dataset, loss, "pytorch")
                res.write_json(path, cell)
                print(json.dumps(_line(cell, f"{ctx.world_size} proc")), flush=True)
    finally:
        destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data folder (train.rec, property, *.bin)")
    p.add_argument("--losses", type=lambda s: [x for x in s.split(",") if x], default=[])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--sample-rate", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3, help="compare mode: seeds per setting")
    p.add_argument("--runs", default="runs")
    p.add_argument("--out", default="results/scale_out", help="results folder")
    p.add_argument("--json", type=Path, help="compare mode: write the rows here")
    args = p.parse_args(argv)
    from bench.runtime import configure_threads

    configure_threads()
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

    lines = [f"# Verification accuracy, 1 process vs {nproc} processes", "",
             f"Command: `{command}`", "",
             "| loss | target | 1 proc mean +- std (seeds) | "
             f"{nproc} proc mean +- std | paired diff mean | max abs paired diff |",
             "|---|---|---|---|---|---|"]
    for loss in dict.fromkeys(r["loss"] for r in rows):
        mine = [r for r in rows if r["loss"] == loss and r["status"] == "ok"]
        for target in sorted({t for r in mine for t in r["acc"]}):
            one = {r["seed"]: r["acc"][target] for r in mine if r["nproc"] == 1}
            many = {r["seed"]: r["acc"][target] for r in mine if r["nproc"] == nproc}
            diffs = [many[s] - one[s] for s in one if s in many]
            if len(one) < 2 or not diffs:
                continue
            lines.append(
                f"| {loss} | {target} | {st.mean(one.values()):.4f} +- "
                f"{st.stdev(one.values()):.4f} ({len(one)}) | {st.mean(many.values()):.4f} +- "
                f"{st.stdev(many.values()) if len(many) > 1 else float('nan'):.4f} | "
                f"{st.mean(diffs):+.4f} | {max(abs(d) for d in diffs):.4f} |")
    failed = [f"{r['loss']} ({r['run']}, seed {r['seed']}): {r['status']}" for r in rows
              if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed: " + "; ".join(failed)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
