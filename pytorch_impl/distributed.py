"""torch.distributed plumbing: process group from torchrun's variables, DDP, batch shards.

Launch with ``torchrun --nproc_per_node N ...`` (it sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) or with ``bench.run.distributed`` (torch.multiprocessing spawn). Backend:
``nccl`` when CUDA is present, ``gloo`` on CPU. Nothing here runs at import time.

Gradient convention (``gather_rows``, ``wrap_ddp(grad_reduction="sum")``): every head computes
the loss of the *global* batch (mean over all ranks' samples), so the gradient that reaches a
rank's embeddings is that rank's share of the global gradient, and the backbone gradients are
*summed* across ranks (not averaged, as DDP does by default). The sum is then exactly the
single-process gradient of the same global batch, so the same LR and schedule apply.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_process_group(rank: int | None = None, world_size: int | None = None,
                       init_method: str | None = None, backend: str | None = None,
                       timeout_s: float = 300.0) -> DistContext:
    """Join (or create) the default process group; arguments default to torchrun's variables.

    Without ``init_method`` the rendezvous is ``env://`` and MASTER_ADDR/MASTER_PORT must be set.
    """
    env = os.environ
    if rank is None or world_size is None:
        missing = [k for k in ("RANK", "WORLD_SIZE") if k not in env]
        if missing:
            raise ValueError(f"init_process_group: environment lacks {', '.join(missing)}; "
                             "launch with torchrun or pass rank and world_size")
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
    if not 0 <= rank < world_size:
        raise ValueError(f"init_process_group: rank must be in [0, {world_size}), got {rank}")
    if init_method is None:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise ValueError(f"init_process_group: env:// rendezvous needs {', '.join(missing)}")
        init_method = "env://"
    backend = backend or default_backend()
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"init_process_group: backend must be gloo or nccl, got {backend!r}")
    local_rank = int(env.get("LOCAL_RANK", rank))
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method, rank=rank,
                                world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank, world_size, local_rank, backend, device)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world(group=None) -> tuple[int, int]:
    """(rank, world size), (0, 1) when no process group is initialised."""
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def shard_bounds(total: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous part; sizes differ by at most one, larger first.

    The same split is used for a batch's rows and for the class weights, so the concatenation
    of the ranks' parts in rank order is the undivided whole.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"shard_bounds: rank must be in [0, {world_size}), got {rank}")
    base, extra = divmod(int(total), world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class _GatherRows(torch.autograd.Function):
    """All-gather of rows along dim 0 (ranks may hold different row counts).

    Backward: with ``reduce_grad`` the incoming gradients are partial (each rank's class shard
    contributes) and are summed across ranks before taking this rank's rows; without it every
    rank computed the same full gradient (a replicated loss) and the rows are just sliced.
    """

    @staticmethod
    def forward(ctx, x, reduce_grad, group):
        world = dist.get_world_size(group)
        counts = [torch.zeros(1, dtype=torch.int64, device=x.device) for _ in range(world)]
        dist.all_gather(counts, torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device),
                        group=group)
        counts = [int(c) for c in counts]
        most = max(counts)
        padded = x.new_zeros((most, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous(), group=group)
        rank = dist.get_rank(group)
        ctx.reduce_grad, ctx.group = reduce_grad, group
        ctx.start, ctx.count = sum(counts[:rank]), counts[rank]
        return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        if ctx.reduce_grad:
            grad = grad.clone()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.start: ctx.start + ctx.count], None, None


def gather_rows(x: torch.Tensor, reduce_grad: bool, group=None) -> torch.Tensor:
    """Differentiable all-gather of ``x``'s rows in rank order; see ``_GatherRows``."""
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return x
    return _GatherRows.apply(x, reduce_grad, group)


@torch.no_grad()
def gather_rows_nograd(x: torch.Tensor, group=None) -> torch.Tensor:
    return gather_rows(x.detach(), False, group)


def row_offset(count: int, group=None, device=None) -> int:
    """Index of this rank's first row in a ``gather_rows`` result (ranks' counts summed)."""
    if not dist.is_initialized():
        return 0
    counts = gather_rows_nograd(torch.tensor([count], dtype=torch.int64, device=device), group)
    return int(counts[: dist.get_rank(group)].sum())


def _sum_allreduce_hook(process_group, bucket):
    """DDP communication hook: sum the bucket across ranks (DDP's default divides by N)."""
    fut = dist.all_reduce(bucket.buffer(), group=process_group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def wrap_ddp(module: torch.nn.Module, device: torch.device | None = None,
             grad_reduction: str = "sum") -> torch.nn.Module:
    """DistributedDataParallel around ``module``; ``grad_reduction`` "sum" (global-batch heads,
    see the module docstring) or "mean" (DDP's default, for a loss averaged per rank)."""
    if grad_reduction not in ("sum", "mean"):
        raise ValueError(f"wrap_ddp: grad_reduction must be 'sum' or 'mean', "
                         f"got {grad_reduction!r}")
    if not dist.is_initialized():
        raise ValueError("wrap_ddp: no process group; call init_process_group first")
    ids = [device.index] if device is not None and device.type == "cuda" else None
    # DDP's default buffer sync: BatchNorm running statistics follow rank 0 at every forward
    ddp = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
    if grad_reduction == "sum":
        ddp.register_comm_hook(None, _sum_allreduce_hook)
    return ddp


class DistributedBatchSampler:
    """This rank's rows of every global batch of a sampler (``common.sampler.EpochSampler``).

    The global batch of ``sampler.batches(epoch)`` is cut by ``shard_bounds`` into contiguous
    per-rank slices, so the N ranks together see exactly the single-process batches, in the same
    order and with the same flips, and the slices of one step are disjoint. ``len`` is the
    global sampler's (every rank runs the same number of steps).
    """

    def __init__(self, sampler, rank: int, world_size: int):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"DistributedBatchSampler: rank must be in [0, {world_size}), "
                             f"got {rank}")
        if sampler.batch_size < world_size:
            raise ValueError(f"DistributedBatchSampler: the global batch_size "
                             f"({sampler.batch_size}) must be >= world_size ({world_size})")
        self.sampler, self.rank, self.world_size = sampler, rank, world_size
        self.batch_size = sampler.batch_size

    def __len__(self) -> int:
        return len(self.sampler)

    def batches(self, epoch: int):
        for indices, flips in self.sampler.batches(epoch):
            lo, hi = shard_bounds(len(indices), self.world_size, self.rank)
            yield np.ascontiguousarray(indices[lo:hi]), np.ascontiguousarray(flips[lo:hi])
