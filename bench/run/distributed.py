"""Multi-process PyTorch cells: the launcher behind ``python -m bench run --nproc N``.

``run_cell(cfg, dataset, loss, "pytorch", data, targets, family_hash, cell_hash)`` has the
signature of ``bench.run.cell.run_cell`` and returns the same record: it spawns ``cfg.nproc``
ranks (``torch.multiprocessing``, gloo on CPU / nccl with one GPU per rank); each trains the
cell recipe (``bench.run.cell.train``) with ``pytorch_impl.distributed_train.DistributedTrainer``
on its slice of every global batch (``DistributedBatchSampler``: same global batch size, seed,
weights and LR schedule as the single-process cell); rank 0 evaluates and returns the record.
Checkpoints are per rank (``...-<hash>.nprocN.rankR.ckpt.npz``): a resume needs the same N.
``python -m bench scale-out`` compares 1 vs N processes and is the torchrun worker.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from pathlib import Path

from bench.run import cell as cells
from bench.run import export


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_rank(ctx, cfg, dataset: str, loss_name: str, data: tuple, targets: dict,
               family_hash: str, cell_hash: str, sample_rate: float = 1.0,
               model: bool = False) -> dict | None:
    """One rank's part of a cell (process group already up); the cell record on rank 0.

    ``model``: a finished record also carries the model for the harness to export
    (``_model``, as ``bench.run.cell.run_cell``'s: the class-weight shards gathered)."""
    import torch
    import torch.distributed as dist

    from pytorch_impl.distributed import DistributedBatchSampler
    from pytorch_impl.distributed_train import DistributedTrainer

    record = cells.new_record(cfg, dataset, loss_name, "pytorch", family_hash, cell_hash,
                              targets, nproc=ctx.world_size, sample_rate=sample_rate)
    params, lstate = cells.initial_state(cfg, loss_name, data[2])
    single = cells.build_trainer("pytorch", cfg, loss_name, data[2], params, lstate)
    trainer = DistributedTrainer(single.backbone, single.loss, ctx, momentum=cfg.momentum,
                                 weight_decay=cfg.weight_decay, sample_rate=sample_rate,
                                 seed=cfg.seed, decay_all=cfg.decay_all)
    del single
    sampler = DistributedBatchSampler(cells.epoch_sampler(cfg, trainer.loss.replicated, data[1]),
                                      ctx.rank, ctx.world_size)
    ckpt = cells.checkpoint_path(cfg, dataset, loss_name, "pytorch", cell_hash,
                                 ctx.world_size, ctx.rank)
    lead = ctx.rank == 0
    record = cells.train(cfg, record, trainer, sampler, data, targets, ckpt,
                         f"{loss_name}/pytorch x{ctx.world_size}", lead=lead)
    if record["status"] != "ok":  # the loss is global: every rank stops at the same step
        return record if lead else None
    # fit counts this rank's images; the record reports the global batch's
    total = torch.tensor([record["history"]["timing"]["images"]], dtype=torch.float64)
    dist.all_reduce(total)
    head = full_loss_state(trainer) if model else None  # collective: every rank takes part
    if not lead:
        return None
    record["history"]["timing"]["images"] = int(total.item())
    if model:
        record["_model"] = export.cell_model("pytorch", trainer.net, head, data[2])
    return record


def full_loss_state(trainer) -> dict:
    """The single-process ``loss_state`` of a ``DistributedTrainer``'s loss: the sharded
    head's state with its class weights gathered from every rank (collective), plus the
    replicated part's (a joint objective's centres, a metric loss)."""
    from pytorch_impl.losses import loss_state

    state = {}
    sharded, replicated = trainer.loss.sharded, trainer.loss.replicated
    if sharded is not None:
        state.update(loss_state(sharded.head))
        state["weight"] = sharded.full_weight().cpu().numpy().copy()
    if replicated is not None:
        state.update(loss_state(replicated))
    return state


def _spawned(rank, nproc, port, threads, args, out):
    import torch

    torch.set_num_threads(threads)
    from pytorch_impl.distributed import destroy_process_group, init_process_group

    ctx = init_process_group(rank, nproc, init_method=f"tcp://127.0.0.1:{port}")
    try:
        record = train_rank(ctx, *args, model=True)
        if record is not None:  # pickle: the record carries VerificationResult objects
            Path(out).write_bytes(pickle.dumps(record))
        # tear down together: a rank that destroyed its gloo group while rank 0 was still
        # writing the record aborted ("terminate called without an active exception", seen
        # once in four fresh-clone runs of tests/bench/test_bench_nproc.py)
        torch.distributed.barrier()
    finally:
        destroy_process_group()


def run_cell(cfg, dataset: str, loss_name: str, backend: str, data: tuple, targets: dict,
             family_hash: str, cell_hash: str) -> dict:
    """``bench.run.cell.run_cell`` on ``cfg.nproc`` ranks with ``cfg.sample_rate``."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    nproc, rate = int(cfg.nproc), float(cfg.sample_rate)
    if backend != "pytorch":
        raise ValueError(f"run_cell: nproc > 1 runs the pytorch backend only, got {backend!r}")
    if nproc < 1 or nproc > cfg.batch_size:
        raise ValueError(f"run_cell: nproc must be in [1, batch_size={cfg.batch_size}], "
                         f"got {nproc}")
    # ranks share the cores: split the thread budget instead of oversubscribing
    threads = max(1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)) // nproc)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cell.pkl"
        args = (cfg, dataset, loss_name, data, targets, family_hash, cell_hash, rate)
        try:
            mp.spawn(_spawned, args=(nproc, _free_port(), threads, args, str(out)),
                     nprocs=nproc, join=True)
        except ProcessException as exc:  # the harness records RuntimeError cells, goes on
            raise RuntimeError(f"run_cell: rank {exc.error_index} of {nproc} failed "
                               f"({loss_name}): {exc}") from exc
        return pickle.loads(out.read_bytes())
