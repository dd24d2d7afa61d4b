"""The ``MarginSoftmax`` base, loss-state exchange and registry hook-up (PyTorch).

Mirrors ``gluon_impl/losses/base.py`` name for name; the error texts are identical in both
backends (tests/test_loss_contract.py compares them). Notation and formulas: SPEC.md section 1.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch import nn

from common.loss_args import (  # noqa: F401  (re-exported to the loss files)
    MAX_SIZE,
    LossRegistry,
    check_bool,
    check_int,
    check_real,
)

from .. import ops

_LOSSES = LossRegistry()
_REGISTRY = _LOSSES.classes  # name -> class (joint.py walks it to generate the joint objectives)
register_loss = _LOSSES.register
list_losses = _LOSSES.names
loss_class = _LOSSES.get
build_loss = _LOSSES.build


class Loss(nn.Module):
    """Shared part of every loss: sizes, input checks, ``step`` and the state names.

    Subclasses implement ``compute(x, labels)``; ``forward`` checks the inputs, runs the loss
    in float32 or float64 (half-precision embeddings from an autocast backbone are upcast,
    and autocast is off inside the loss) and returns the scalar.
    """

    requires_pk_batches = False
    state_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, embedding_size: int):
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_int(owner, "num_classes", num_classes, 1, MAX_SIZE)
        self.embedding_size = check_int(owner, "embedding_size", embedding_size, 1, MAX_SIZE)

    @classmethod
    def hyperparameters(cls) -> dict:
        """Constructor arguments other than the sizes, with their defaults."""
        params = inspect.signature(cls.__init__).parameters
        return {k: p.default for k, p in params.items()
                if k not in ("self", "num_classes", "embedding_size")
                and p.kind is p.POSITIONAL_OR_KEYWORD}

    def check_inputs(self, x, labels) -> None:
        owner = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.embedding_size:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"{owner}: embeddings must have shape (B, {self.embedding_size}), "
                             f"got {shape}")
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 \
                or labels.shape[0] != x.shape[0] or labels.dtype.is_floating_point:
            shape = tuple(labels.shape) if hasattr(labels, "shape") else type(labels).__name__
            raise ValueError(f"{owner}: labels must be integers of shape ({x.shape[0]},), "
                             f"got {shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{owner}: the batch is empty")
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"{owner}: labels must be in [0, {self.num_classes}), "
                             f"got values in [{lo}, {hi}]")
        if not ops.all_finite(x):
            raise ValueError(f"{owner}: embeddings contain NaN or Inf")

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.check_inputs(x, labels)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
            return self.compute(x.to(dtype), labels.long())

    def compute(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Advance training state after an optimiser step; stateless losses do nothing."""

    def state_items(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.state_names}


class MarginSoftmax(Loss):
    """Softmax cross-entropy over (optionally normalised) logits with a target-logit hook.

    logits_j = r_i * <x_i^', W_j^'> where x' = x^ (``normalize_embedding``) or x, W' = W^
    (``normalize_weight``) or W, and r_i = ``scale`` (or |x_i| when the subclass uses the
    embedding norm, SphereFace). The target column alone becomes r_i * target_logit(cos_y),
    cos_y clamped to [-1, 1]; a subclass defines ``target_logit`` and nothing else.
    The scale is applied on the B x D side, the head is ``ops.margin_cross_entropy`` (which
    also normalises the embeddings, ``embed_scale``).
    """

    normalize_weight = True
    normalize_embedding = True
    scale_by_norm = False  # r_i = |x_i| instead of the constant scale (SphereFace)
    target_logit = None  # hook: cos_y (B,) -> new target cosine (B,); None keeps the target
    uses_norm = False  # True: the hook is target_logit(cos_y, |x|) (MagFace, AdaFace)
    softmax_family = True
    state_names = ("weight",)

    def __init__(self, num_classes: int, embedding_size: int, scale: float | None = None):
        super().__init__(num_classes, embedding_size)
        self.scale = None if scale is None else check_real(
            type(self).__name__, "scale", scale, 0.0, 1e6, lo_open=True)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def compute(self, x, labels):
        return self.head(x, labels, ops.row_norm(x) if self.scale_by_norm or self.uses_norm
                         else None)

    def head(self, x, labels, norm):
        """The fused head, given |x| (``norm``, (B,)) where the loss uses it (else None)."""
        embed_scale = None
        if self.scale_by_norm:
            r = norm
        elif self.normalize_embedding:  # x / |x| * s inside the fused head
            r, embed_scale = torch.full_like(x[:, 0], self.scale), self.scale
        else:
            r = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        hook = None if self.target_logit is None else self._clamped_hook
        weight = self.weight.to(x.dtype)
        return ops.margin_cross_entropy(x, weight, labels, r, self.normalize_weight, hook,
                                        norm if self.uses_norm else None,
                                        embed_scale=embed_scale)

    def _clamped_hook(self, cos_y, norm=None):
        if norm is None:
            return self.target_logit(ops.clamp_st(cos_y, -1.0, 1.0))
        return self.target_logit(ops.clamp_st(cos_y, -1.0, 1.0), norm)


class AuxTerm(nn.Module):
    """An auxiliary term of a joint objective (centre, ring): forward -> unweighted scalar."""

    state_names: tuple[str, ...] = ()

    @torch.no_grad()
    def step(self, x, labels) -> None:
        pass


class JointLoss(Loss):
    """base softmax-family loss + lambda_ * auxiliary term (e.g. "ArcFace + 0.01 x Center").

    ``base_cls`` and ``aux_cls`` are set by the subclass (see center.py, ring.py, joint.py);
    hyper-parameters named by ``aux_cls`` go to the term, the others to the base loss.
    """

    base_cls: type = None
    aux_cls: type = None
    softmax_family = False

    def __init__(self, num_classes: int, embedding_size: int, lambda_: float = 0.01,
                 **hyperparams):
        super().__init__(num_classes, embedding_size)
        self.lambda_ = check_real(type(self).__name__, "lambda_", lambda_, 0.0, 1e6)
        aux_names = set(self.aux_cls.hyperparameters())
        aux_kw = {k: v for k, v in hyperparams.items() if k in aux_names}
        base_kw = {k: v for k, v in hyperparams.items() if k not in aux_names}
        self.base = self.base_cls(num_classes, embedding_size, **base_kw)
        self.aux = self.aux_cls(num_classes, embedding_size, **aux_kw)
        self.state_names = self.base.state_names + self.aux.state_names
        self.requires_pk_batches = self.base.requires_pk_batches

    @classmethod
    def hyperparameters(cls) -> dict:
        out = {"lambda_": 0.01}
        out.update(cls.base_cls.hyperparameters())
        out.update(cls.aux_cls.hyperparameters())
        return out

    @property
    def weight(self):
        return self.base.weight

    def compute(self, x, labels):
        return self.base.compute(x, labels) + self.lambda_ * self.aux(x, labels)

    @torch.no_grad()
    def step(self, x, labels) -> None:
        self.base.step(x, labels)
        self.aux.step(x, labels)

    def state_items(self) -> dict[str, torch.Tensor]:
        return {**self.base.state_items(), **self.aux.state_items()}


def loss_state(loss: nn.Module) -> dict[str, np.ndarray]:
    """Parameters and training state under canonical names ("weight", "centers", ...)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in loss.state_items().items()}


@torch.no_grad()
def load_loss_state(loss: nn.Module, state: dict[str, np.ndarray]) -> None:
    """Copy canonical state into ``loss``; missing/unexpected names or shapes raise ValueError."""
    items = loss.state_items()
    missing, unexpected = sorted(set(items) - set(state)), sorted(set(state) - set(items))
    if missing or unexpected:
        raise ValueError(f"{type(loss).__name__}: loss state mismatch; missing {missing}, "
                         f"unexpected {unexpected}")
    for name, tensor in items.items():
        value = np.asarray(state[name])
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(f"{type(loss).__name__}: state {name!r} must have shape "
                             f"{tuple(tensor.shape)}, got {tuple(value.shape)}")
        tensor.copy_(torch.as_tensor(value, dtype=tensor.dtype))
