"""One PyTorch training step, evaluation embedding and checkpoint state for ``common.trainloop``.

The loop itself (epochs, data order, flips, LR schedule, NaN stop, checkpoints, progress) is
framework-free in ``common/trainloop.py`` so that it cannot drift between backends; this file and
``gluon_impl/train.py`` hold only what must differ, in the same order and with the same names.

Optimiser: SGD, momentum 0.9, weight decay 5e-4, PyTorch's rule

    g = grad + wd * w;   buf = momentum * buf + g;   w = w - lr * buf

(``gluon_impl.train`` applies the very same rule by hand, because MXNet's ``sgd`` keeps
``lr * g`` inside the momentum buffer, which differs whenever the LR changes, e.g. in warm-up).
Weight decay applies to tensors with ``ndim > 1`` only (conv/linear kernels, class weights);
biases, BatchNorm gamma/beta and PReLU slopes are not decayed (the "no bias decay" of
Goyal et al. 2017), decided by shape so both backends pick the same tensors.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from common.trainer import (
    StepOutput,
    check_sgd_args,
    decayed,
    named_trainable,
    predicts_with_normalized_weight,
)
from common.trainloop import split_state

from . import ops
from .losses.base import load_loss_state, loss_state


def trainable_params(backbone, loss):
    """``common.trainer.named_trainable`` over torch modules: the parameters that require grad."""
    return named_trainable(backbone.named_parameters(), loss.named_parameters(),
                           lambda p: p.requires_grad)


def sgd(named_params, momentum: float, weight_decay: float,
        decay_all: bool = False) -> torch.optim.SGD:
    """SGD with weight decay on the tensors of ``ndim > 1`` only (see the module docstring), or
    on every tensor with ``decay_all`` (``common.trainer.decayed``)."""
    groups = [{"params": [p for _, p in named_params if decayed(p.shape, decay_all)],
               "weight_decay": weight_decay},
              {"params": [p for _, p in named_params if not decayed(p.shape, decay_all)],
               "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=0.0, momentum=momentum,
                           weight_decay=weight_decay)


def class_logits(embeddings, weight, normalized: bool, num_classes: int | None = None):
    """Logits used for training accuracy: cos(x, W_j) for losses that normalise W, else W.x.

    A weight of K x num_classes rows (sub-centres, class-major) gives the max over each class's K.
    """
    if normalized:
        embeddings = torch.nn.functional.normalize(embeddings, dim=1)
        weight = torch.nn.functional.normalize(weight, dim=1)
    logits = embeddings @ weight.t()
    if num_classes and logits.shape[1] != num_classes:
        logits = logits.reshape(logits.shape[0], num_classes, -1).amax(dim=2)
    return logits


class Trainer:
    """Backbone + loss head + SGD; the same constructor and methods as ``gluon_impl.train``."""

    def __init__(self, backbone, loss, momentum: float = 0.9, weight_decay: float = 5e-4,
                 hybridize: bool = True, decay_all: bool = False):
        del hybridize  # a Gluon-only switch; accepted so both constructors read alike
        check_sgd_args(momentum, weight_decay)
        self.backbone = backbone
        self.loss = loss
        self.named_params = trainable_params(backbone, loss)
        self.optimizer = sgd(self.named_params, momentum, weight_decay, decay_all)
        self.normalized_weight = predicts_with_normalized_weight(loss)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> StepOutput:
        """Forward, backward, NaN check, SGD step, ``loss.step``; no update if non-finite."""
        self.backbone.train()
        self.loss.train()
        x = torch.from_numpy(images)
        y = torch.from_numpy(labels.astype(np.int64))
        self.optimizer.zero_grad(set_to_none=True)
        emb = self.backbone(x)
        # a diverged backbone stops here, before the loss's own input check raises
        if not ops.all_finite(emb):
            return StepOutput(float("nan"), -1, 0.0)
        # the head runs on a detached copy so its time is measured alone; chaining its input
        # gradient into emb.backward gives exactly the gradient of the joint graph
        head_in = emb.detach().requires_grad_(True)
        start = time.perf_counter()
        value = self.loss(head_in, y)
        value.backward()
        head_seconds = time.perf_counter() - start
        loss_value = float(value.detach())
        if not np.isfinite(loss_value):
            return StepOutput(loss_value, -1, head_seconds)
        emb.backward(head_in.grad)
        self.optimizer.step()
        with torch.no_grad():
            self.loss.step(head_in.detach(), y)
            correct = -1
            weight = getattr(self.loss, "weight", None)
            if weight is not None:
                pred = class_logits(head_in, weight, self.normalized_weight,
                                    self.loss.num_classes).argmax(1)
                correct = int((pred == y).sum())
        return StepOutput(loss_value, correct, head_seconds)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings in inference mode (BatchNorm running statistics), float32 N x D."""
        self.backbone.eval()
        with torch.no_grad():
            return self.backbone(torch.from_numpy(np.ascontiguousarray(images))).numpy()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything a resume needs: weights, buffers, momentum, loss state, as NumPy."""
        out = {f"backbone/{k}": v.detach().numpy().copy()
               for k, v in self.backbone.state_dict().items()}
        out.update({f"loss/{k}": v.detach().numpy().copy()
                    for k, v in self.loss.state_dict().items()})
        for name, p in self.named_params:
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                out[f"momentum/{name}"] = buf.detach().numpy().copy()
        out.update({f"lossstate/{k}": v for k, v in loss_state(self.loss).items()})
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of ``state_arrays``; a missing or unexpected key raises ValueError."""
        parts = split_state(arrays, self.state_arrays())
        for part, module in (("backbone", self.backbone), ("loss", self.loss)):
            module.load_state_dict({k: torch.from_numpy(np.array(v))
                                    for k, v in parts[part].items()}, strict=True)
        for name, p in self.named_params:
            if name in parts["momentum"]:
                self.optimizer.state[p]["momentum_buffer"] = torch.from_numpy(
                    np.array(parts["momentum"][name]))
        load_loss_state(self.loss, parts["lossstate"])
