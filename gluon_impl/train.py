"""One Gluon training step, evaluation embedding and checkpoint state for ``common.trainloop``.

Mirrors ``pytorch_impl/train.py`` (same names, order, update rule; see its docstring). The
update is written out here rather than taken from ``mx.optimizer.SGD``: MXNet's rule
``mom = m * mom - lr * (g + wd * w); w += mom`` folds the learning rate into the momentum
buffer, so it departs from PyTorch's ``buf = m * buf + (g + wd * w); w -= lr * buf`` as soon as
the LR changes (warm-up, decay). The backbone is hybridised with ``static_alloc``.
"""

from __future__ import annotations

import time

import mxnet as mx
import numpy as np
from mxnet import autograd, nd

from common.trainer import (
    StepOutput,
    check_sgd_args,
    decayed,
    named_trainable,
    predicts_with_normalized_weight,
)
from common.trainloop import split_state

from .losses.base import load_loss_state, loss_state


def trainable_params(backbone, loss):
    """``common.trainer.named_trainable`` over Gluon blocks: the parameters with a gradient."""
    return named_trainable(backbone._collect_params_with_prefix().items(),
                           loss._collect_params_with_prefix().items(),
                           lambda p: p.grad_req != "null")


def class_logits(embeddings, weight, normalized: bool, num_classes: int | None = None):
    """Logits used for training accuracy: cos(x, W_j) for losses that normalise W, else W.x.

    A weight of K x num_classes rows (sub-centres, class-major) gives the max over each class's K.
    """
    if normalized:
        embeddings = nd.L2Normalization(embeddings, mode="instance")
        weight = nd.L2Normalization(weight, mode="instance")
    logits = nd.dot(embeddings, weight, transpose_b=True)
    if num_classes and logits.shape[1] != num_classes:
        logits = logits.reshape((logits.shape[0], num_classes, -1)).max(axis=2)
    return logits


def torch_sgd_step(w, g, buf, lr: float, momentum: float, weight_decay: float) -> None:
    """PyTorch's SGD rule in place: g += wd w; buf = momentum buf + g; w -= lr buf (MXNet's
    own ``sgd_mom_update`` keeps lr inside the buffer, which differs once the LR changes).

    Three ``sgd_update`` calls, w' = (1 - lr' wd') w - lr' g', with arguments chosen to give
    each line: one operator each instead of six, no temporaries (the Python loop over a
    MobileFaceNet's parameters took a third of a Gluon training step at 32 px). The results
    are torch's float32 operations bit for bit at momentum 0.9
    (tests/backends/test_train_parity.py).
    A first step from buf = 0 gives buf = g, as torch's clone does. ``g`` is overwritten.
    """
    if weight_decay:
        nd.sgd_update(g, w, lr=-weight_decay, wd=0.0, out=g)  # g + wd w
    nd.sgd_update(buf, g, lr=-1.0, wd=momentum - 1.0, out=buf)  # (1 + momentum - 1) buf + g
    nd.sgd_update(w, buf, lr=lr, wd=0.0, out=w)  # w - lr buf


class Trainer:
    """Backbone + loss head + SGD; the same constructor and methods as ``pytorch_impl.train``."""

    def __init__(self, backbone, loss, momentum: float = 0.9, weight_decay: float = 5e-4,
                 hybridize: bool = True, decay_all: bool = False):
        check_sgd_args(momentum, weight_decay)
        self.backbone = backbone
        self.loss = loss
        if hybridize:
            backbone.hybridize(static_alloc=True)
        self.named_params = trainable_params(backbone, loss)
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.decay_all = decay_all
        self.lr = 0.0
        self.buffers: dict[str, nd.NDArray] = {}
        self.normalized_weight = predicts_with_normalized_weight(loss)

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def _sgd_update(self) -> None:
        for name, p in self.named_params:
            w = p.data()
            if name not in self.buffers:
                self.buffers[name] = nd.zeros_like(w)
            decay = self.weight_decay if decayed(p.shape, self.decay_all) else 0.0
            torch_sgd_step(w, p.grad(), self.buffers[name], self.lr, self.momentum, decay)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> StepOutput:
        """Forward, backward, NaN check, SGD step, ``loss.step``; no update if non-finite."""
        x = nd.array(images, dtype="float32")
        # MXNet's pick/one_hot/comparison ops take labels as float32 (exact below 2**24)
        y = nd.array(labels, dtype="float32")
        with autograd.record(train_mode=True):
            emb = self.backbone(x)
        emb.wait_to_read()
        # a diverged backbone stops here, before the loss's own input check raises
        if not bool(nd.contrib.isfinite(emb).min().asscalar()):
            return StepOutput(float("nan"), -1, 0.0)
        # the head runs on a detached copy so its time is measured alone; chaining its input
        # gradient into emb.backward gives exactly the gradient of the joint graph
        head_in = emb.detach()
        head_in.attach_grad()
        start = time.perf_counter()
        with autograd.record(train_mode=True):
            value = self.loss(head_in, y)
        value.backward()
        head_in.grad.wait_to_read()
        head_seconds = time.perf_counter() - start
        loss_value = float(value.asnumpy().reshape(-1)[0])
        if not np.isfinite(loss_value):
            return StepOutput(loss_value, -1, head_seconds)
        emb.backward(head_in.grad)
        self._sgd_update()
        self.loss.step(head_in.detach(), y)
        correct = -1
        weight = getattr(self.loss, "weight", None)
        if weight is not None:
            w = weight.data() if isinstance(weight, mx.gluon.Parameter) else weight
            pred = class_logits(head_in, w, self.normalized_weight,
                                self.loss.num_classes).argmax(axis=1)
            correct = int((pred == y).sum().asscalar())
        return StepOutput(loss_value, correct, head_seconds)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings in inference mode (BatchNorm running statistics), float32 N x D."""
        return self.backbone(nd.array(images, dtype="float32")).asnumpy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything a resume needs: weights, buffers, momentum, loss state, as NumPy."""
        out = {f"backbone/{k}": p.data().asnumpy()
               for k, p in self.backbone._collect_params_with_prefix().items()}
        out.update({f"loss/{k}": p.data().asnumpy()
                    for k, p in self.loss._collect_params_with_prefix().items()})
        for name, buf in self.buffers.items():
            out[f"momentum/{name}"] = buf.asnumpy()
        out.update({f"lossstate/{k}": v for k, v in loss_state(self.loss).items()})
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of ``state_arrays``; a missing or unexpected key raises ValueError."""
        parts = split_state(arrays, self.state_arrays())
        for part, block in (("backbone", self.backbone), ("loss", self.loss)):
            for k, p in block._collect_params_with_prefix().items():
                p.set_data(nd.array(parts[part][k], dtype=p.dtype))
        self.buffers = {k: nd.array(v, dtype=v.dtype) for k, v in parts["momentum"].items()}
        load_loss_state(self.loss, parts["lossstate"])
