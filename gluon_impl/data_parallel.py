"""Gluon data parallelism over several contexts of one machine, gradients summed by a kvstore.

Counterpart of ``pytorch_impl/distributed_train.py`` for MXNet: ``DataParallelTrainer`` has the
methods of ``gluon_impl.train.Trainer`` (``set_lr``, ``train_step``, ``embed``,
``state_arrays``, ``load_state_arrays``), so ``common.trainloop.fit`` runs it unchanged with the
*global* batch: ``gluon.utils.split_and_load`` cuts it into one slice per context (e.g.
``[mx.gpu(0), ..., mx.gpu(7)]``), each context runs backbone and loss on its slice, and the
kvstore (``local``: reduce on the CPU; ``device``: on the GPUs, peer to peer) sums the
gradients, which every context then applies with the same PyTorch-style SGD rule as
``train.py``. Each slice's loss is weighted by its share of the batch (n_k / B), so for losses
that are a mean over samples (softmax family, centre, ring) the summed gradient is the
single-context gradient of the global batch. Batch-wise losses (triplet, contrastive) mine
pairs within each slice, and BatchNorm normalises per slice, as in any Gluon data-parallel run.

Multi-machine kvstores (``dist_sync``, ``dist_device_sync``, ``dist_async``) need MXNet's
ps-lite launcher (``tools/launch.py`` sets DMLC_ROLE, DMLC_NUM_WORKER...); see docs/SCALE_OUT.md.
"""

from __future__ import annotations

import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from common.trainer import StepOutput, check_sgd_args, decayed, predicts_with_normalized_weight
from common.trainloop import split_state

from .losses.base import load_loss_state, loss_state
from .train import class_logits, torch_sgd_step, trainable_params

KVSTORES = ("local", "device", "dist_sync", "dist_device_sync", "dist_async")


def parse_contexts(spec: str) -> list[mx.Context]:
    """"gpu:0,1,2" / "cpu:0,1" / "cpu" -> contexts (the spelling of ``--contexts``)."""
    kind, _, ids = str(spec).partition(":")
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"contexts must look like 'gpu:0,1' or 'cpu:0,1', got {spec!r}")
    try:
        numbers = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        raise ValueError(f"contexts must look like 'gpu:0,1' or 'cpu:0,1', "
                         f"got {spec!r}") from None
    return [mx.Context(kind, i) for i in numbers]


class DataParallelTrainer:
    """Backbone + loss replicated on ``contexts``; the same methods as ``train.Trainer``."""

    def __init__(self, backbone, loss, contexts, kvstore: str = "device", momentum: float = 0.9,
                 weight_decay: float = 5e-4, hybridize: bool = True, decay_all: bool = False):
        check_sgd_args(momentum, weight_decay)
        contexts = list(contexts)
        if not contexts or len(set(map(str, contexts))) != len(contexts):
            raise ValueError(f"contexts must be a non-empty list of distinct contexts, "
                             f"got {contexts!r}")
        if kvstore not in KVSTORES:
            raise ValueError(f"kvstore must be one of {', '.join(KVSTORES)}, got {kvstore!r}")
        self.contexts = contexts
        self.backbone, self.loss = backbone, loss
        for block in (backbone, loss):
            block.collect_params().reset_ctx(contexts)  # copies the current values to each
        if hybridize:
            backbone.hybridize(static_alloc=True, static_shape=True)
        self.named_params = trainable_params(backbone, loss)
        self.kv = mx.kv.create(kvstore)
        for i, (_, p) in enumerate(self.named_params):
            self.kv.init(i, nd.zeros(p.shape, ctx=contexts[0], dtype=p.dtype))
        self.momentum, self.weight_decay, self.lr = momentum, weight_decay, 0.0
        self.decay_all = decay_all
        self.buffers: dict[str, list[nd.NDArray]] = {}
        self.normalized_weight = predicts_with_normalized_weight(loss)

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def _sum_gradients(self) -> None:
        for i, (_, p) in enumerate(self.named_params):
            grads = p.list_grad()
            self.kv.pushpull(i, grads, out=grads)

    def _sgd_update(self) -> None:
        """``train.Trainer._sgd_update`` on every context's copy (identical summed grads)."""
        for name, p in self.named_params:
            if name not in self.buffers:
                self.buffers[name] = [nd.zeros_like(w) for w in p.list_data()]
            decay = self.weight_decay if decayed(p.shape, self.decay_all) else 0.0
            for w, g, buf in zip(p.list_data(), p.list_grad(), self.buffers[name], strict=True):
                torch_sgd_step(w, g, buf, self.lr, self.momentum, decay)

    def _sync_state(self) -> None:
        """Copy loss state updated on the first context (centres, iteration) to the others."""
        for p in self.loss.collect_params().values():
            if p.grad_req == "null":
                p.set_data(p.data(self.contexts[0]))

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> StepOutput:
        """Split, forward/backward per context, kvstore sum, SGD, ``loss.step`` on the batch."""
        total = len(labels)
        xs = gluon.utils.split_and_load(nd.array(images, dtype="float32"), self.contexts,
                                        even_split=False)
        ys = gluon.utils.split_and_load(nd.array(labels.astype(np.int64), dtype="int64"),
                                        self.contexts, even_split=False)
        with autograd.record(train_mode=True):
            embs = [self.backbone(x) for x in xs]
        heads = []
        for e in embs:
            h = e.detach()
            h.attach_grad()
            heads.append(h)
        start = time.perf_counter()
        with autograd.record(train_mode=True):
            values = [self.loss(h, y) * (h.shape[0] / total) for h, y in zip(heads, ys,
                                                                             strict=True)]
        autograd.backward(values)
        nd.waitall()
        head_seconds = time.perf_counter() - start
        loss_value = float(sum(v.asnumpy().reshape(-1)[0] for v in values))
        if not np.isfinite(loss_value):
            return StepOutput(loss_value, -1, head_seconds)
        autograd.backward(embs, head_grads=[h.grad for h in heads])
        self._sum_gradients()
        self._sgd_update()
        ctx0 = self.contexts[0]
        with ctx0:
            x_all = nd.concat(*[h.as_in_context(ctx0) for h in heads], dim=0)
            y_all = nd.concat(*[y.as_in_context(ctx0) for y in ys], dim=0)
            self.loss.step(x_all, y_all)
        self._sync_state()
        correct = -1
        weight = getattr(self.loss, "weight", None)
        if weight is not None:
            w = weight.data(ctx0) if isinstance(weight, gluon.Parameter) else weight
            pred = class_logits(x_all, w, self.normalized_weight,
                                self.loss.num_classes).argmax(axis=1)
            correct = int((pred.astype("int64") == y_all).sum().asscalar())
        return StepOutput(loss_value, correct, head_seconds)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings from the first context's copy (all copies hold the same weights)."""
        return self.backbone(nd.array(images, dtype="float32", ctx=self.contexts[0])).asnumpy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """As ``train.Trainer.state_arrays`` (the first context's copy)."""
        ctx0 = self.contexts[0]
        out = {f"backbone/{k}": p.data(ctx0).asnumpy()
               for k, p in self.backbone._collect_params_with_prefix().items()}
        out.update({f"loss/{k}": p.data(ctx0).asnumpy()
                    for k, p in self.loss._collect_params_with_prefix().items()})
        for name, bufs in self.buffers.items():
            out[f"momentum/{name}"] = bufs[0].asnumpy()
        with ctx0:
            out.update({f"lossstate/{k}": v for k, v in loss_state(self.loss).items()})
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        parts = split_state(arrays, self.state_arrays())
        for part, block in (("backbone", self.backbone), ("loss", self.loss)):
            for k, p in block._collect_params_with_prefix().items():
                p.set_data(nd.array(parts[part][k], dtype=p.dtype))
        self.buffers = {k: [nd.array(v, dtype=v.dtype, ctx=c) for c in self.contexts]
                        for k, v in parts["momentum"].items()}
        with self.contexts[0]:
            load_loss_state(self.loss, parts["lossstate"])
        self._sync_state()
