"""Data- and model-parallel training step for ``common.trainloop.fit`` (one process per rank).

``DistributedTrainer`` has the methods of ``pytorch_impl.train.Trainer`` (``set_lr``,
``train_step``, ``embed``, ``state_arrays``, ``load_state_arrays``), so the shared loop runs it
unchanged with a ``distributed.DistributedBatchSampler``: each rank passes its slice of the
global batch. The backbone is wrapped in DDP with summed gradients, the loss in
``DistributedHead``: softmax-family losses (and the softmax part of joint objectives) as a
``PartialFC`` shard, everything else (triplet, contrastive, centre and ring terms) replicated on
the all-gathered global batch. Either way each rank's loss is the loss of the global batch, and
the backbone's BatchNorms normalise by the global batch's statistics (``sync_batchnorm``:
sums all-reduced over the process group, gloo or NCCL; torch's SyncBatchNorm refuses CPU), so
the update is the single-process update of the same global batch (same SGD rule and no-decay
grouping as ``train.py``), up to the order of floating-point sums.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from common.trainer import StepOutput, check_sgd_args
from common.trainloop import split_state

from .distributed import DistContext, gather_rows, gather_rows_nograd, wrap_ddp
from .losses.base import JointLoss, load_loss_state, loss_state
from .partial_fc import PartialFC, shardable
from .sync_batchnorm import convert_sync_batchnorm
from .train import class_logits, sgd, trainable_params


class DistributedHead(nn.Module):
    """Any registered loss evaluated on the global batch; ``forward(x_local, y_local)``.

    ``sharded``: the ``PartialFC`` of the softmax-family part (None for metric losses);
    ``replicated``: the rest, computed identically on every rank from the gathered batch
    (its gradient is sliced, not summed, in ``gather_rows``); ``lambda_`` weighs a joint term.
    """

    def __init__(self, loss: nn.Module, sample_rate: float = 1.0, seed: int = 0, group=None):
        super().__init__()
        self.group = group
        base = loss.base if isinstance(loss, JointLoss) else loss
        self.sharded = None
        self.replicated = loss
        self.lambda_ = 1.0
        if shardable(base):
            self.sharded = PartialFC(base, sample_rate=sample_rate, seed=seed, group=group)
            self.replicated = loss.aux if isinstance(loss, JointLoss) else None
            self.lambda_ = loss.lambda_ if isinstance(loss, JointLoss) else 1.0
        elif sample_rate != 1.0:
            raise ValueError(f"DistributedHead: sample_rate applies to softmax-family losses "
                             f"only; {type(loss).__name__} got {sample_rate!r}")

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        total = self.sharded(x, labels) if self.sharded is not None else 0.0
        if self.replicated is not None:
            x_all = gather_rows(x, False, self.group)
            y_all = gather_rows_nograd(labels, self.group)
            term = self.replicated(x_all.float() if x_all.dtype == torch.float16 else x_all,
                                   y_all)
            total = total + self.lambda_ * term
        return total

    @torch.no_grad()
    def step(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        if self.sharded is not None:
            self.sharded.step(x, labels)
        if self.replicated is not None:
            self.replicated.step(gather_rows_nograd(x, self.group),
                                 gather_rows_nograd(labels, self.group))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor | None:
        """Predicted classes of this rank's rows, or None when the loss has no class weights."""
        if self.sharded is not None:
            return self.sharded.predict(x)
        weight = getattr(self.replicated, "weight", None)
        if weight is None:
            return None
        return class_logits(x, weight, bool(getattr(self.replicated, "normalize_weight", True)),
                            self.replicated.num_classes).argmax(1)


class DistributedTrainer:
    """One rank's trainer; the same methods as ``pytorch_impl.train.Trainer``."""

    def __init__(self, backbone, loss, ctx: DistContext, momentum: float = 0.9,
                 weight_decay: float = 5e-4, sample_rate: float = 1.0, seed: int = 0,
                 decay_all: bool = False):
        check_sgd_args(momentum, weight_decay)
        self.ctx = ctx
        self.net = convert_sync_batchnorm(backbone.to(ctx.device))
        self.backbone = wrap_ddp(self.net, ctx.device, grad_reduction="sum")
        self.loss = DistributedHead(loss, sample_rate=sample_rate, seed=seed).to(ctx.device)
        self.named_params = trainable_params(self.net, self.loss)
        self.optimizer = sgd(self.named_params, momentum, weight_decay, decay_all)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> StepOutput:
        """As ``Trainer.train_step``; the loss is the global batch's, ``correct`` this rank's."""
        self.backbone.train()
        self.loss.train()
        x = torch.from_numpy(images).to(self.ctx.device)
        y = torch.from_numpy(labels.astype(np.int64)).to(self.ctx.device)
        self.optimizer.zero_grad(set_to_none=True)
        emb = self.backbone(x)
        head_in = emb.detach().requires_grad_(True)
        start = time.perf_counter()
        value = self.loss(head_in, y)
        value.backward()
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)
        head_seconds = time.perf_counter() - start
        loss_value = float(value.detach())
        if not np.isfinite(loss_value):  # the same global value on every rank: all stop
            return StepOutput(loss_value, -1, head_seconds)
        emb.backward(head_in.grad)  # DDP sums the backbone gradients here
        self.optimizer.step()
        self.loss.step(head_in.detach(), y)
        pred = self.loss.predict(head_in.detach())
        correct = -1 if pred is None else int((pred == y).sum())
        return StepOutput(loss_value, correct, head_seconds)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """This rank's backbone alone (no DDP collective), so rank 0 may evaluate by itself."""
        self.net.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.ctx.device)
            return self.net(x).cpu().numpy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """This rank's weights, class-weight shard, momentum and loss state (per-rank file)."""
        out = {f"backbone/{k}": v.detach().cpu().numpy().copy()
               for k, v in self.net.state_dict().items()}
        out.update({f"loss/{k}": v.detach().cpu().numpy().copy()
                    for k, v in self.loss.state_dict().items()})
        for name, p in self.named_params:
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                out[f"momentum/{name}"] = buf.detach().cpu().numpy().copy()
        for part in (self.loss.sharded and self.loss.sharded.head, self.loss.replicated):
            if part is not None:
                out.update({f"lossstate/{k}": v for k, v in loss_state(part).items()})
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        parts = split_state(arrays, self.state_arrays())
        for part, module in (("backbone", self.net), ("loss", self.loss)):
            module.load_state_dict({k: torch.from_numpy(np.array(v)).to(self.ctx.device)
                                    for k, v in parts[part].items()}, strict=True)
        for name, p in self.named_params:
            if name in parts["momentum"]:
                self.optimizer.state[p]["momentum_buffer"] = torch.from_numpy(
                    np.array(parts["momentum"][name])).to(self.ctx.device)
        lstate = parts["lossstate"]
        for part in (self.loss.sharded and self.loss.sharded.head, self.loss.replicated):
            if part is not None:
                load_loss_state(part, {k: lstate[k] for k in part.state_items()})
