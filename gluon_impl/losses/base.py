"""The loss bases, the registries and loss-state exchange (Gluon).

Mirror of ``pytorch_impl/losses/base.py`` (same names, defaults and error texts); the maths
and its references are documented there. Losses are HybridBlocks: training state lives in
Parameters with grad_req='null', updated outside the graph by ``step``. Unlike torch, a
Gluon block needs ``initialize``: ``build_loss`` does it, as ``build_backbone`` does.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

from common import contract
from common.contract import (  # noqa: F401  (loss files)
    MAX_SIZE,
    SCALE,
    SCALE_AUTO,
    Bool,
    Int,
    Real,
    check_int,
)
from common.registry import Registry

from .. import ops

INTEGER_STATE = ("iteration",)  # stored as float Parameters, exchanged as int64

LOSSES = Registry("loss", "losses")
AUX_TERMS = Registry("auxiliary term")  # the "<aux>" of the joint objectives
register_loss = LOSSES.register
register_aux = AUX_TERMS.register
list_losses = LOSSES.names
loss_class = LOSSES.get


def build_loss(name: str, num_classes: int, embedding_size: int, **hyperparams):
    """Build a registered loss; unknown names or hyper-parameters raise ValueError.

    The result is initialised (each Parameter by its own initialiser: weights N(0, 0.01),
    state as documented per loss), so ``load_loss_state`` and ``transfer`` work on it at once;
    a later ``initialize()`` leaves the values as they are (MXNet warns and ignores it).
    """
    cls = loss_class(name)
    contract.check_known(cls.__name__, cls.hyperparameters(), hyperparams)
    loss = cls(num_classes=num_classes, embedding_size=embedding_size, **hyperparams)
    loss.initialize()
    return loss


class Loss(gluon.HybridBlock, contract.Declared):
    """Shared part of every loss (see pytorch_impl.losses.base.Loss).

    Subclasses implement ``hybrid_forward(F, x, labels, **params)``; ``forward`` checks
    NDArray inputs (not the Symbols of a hybridized child) before the graph runs.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, embedding_size: int, **hyperparams):
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_int(owner, "num_classes", num_classes, 1, MAX_SIZE)
        self.embedding_size = check_int(owner, "embedding_size", embedding_size, 1, MAX_SIZE)
        self.set_hyperparameters(hyperparams, self.num_classes)
        self.check_enabled = True

    def check_inputs(self, x, labels) -> None:
        owner = type(self).__name__
        if not isinstance(x, nd.NDArray) or x.ndim != 2 or x.shape[1] != self.embedding_size:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(f"{owner}: embeddings must have shape (B, {self.embedding_size}), "
                             f"got {shape}")
        lab = labels.asnumpy() if isinstance(labels, nd.NDArray) else None
        if lab is None or lab.ndim != 1 or lab.shape[0] != x.shape[0] \
                or not np.array_equal(lab, np.round(lab)):
            shape = tuple(labels.shape) if hasattr(labels, "shape") else type(labels).__name__
            raise ValueError(f"{owner}: labels must be integers of shape ({x.shape[0]},), "
                             f"got {shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{owner}: the batch is empty")
        lo, hi = int(lab.min()), int(lab.max())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"{owner}: labels must be in [0, {self.num_classes}), "
                             f"got values in [{lo}, {hi}]")
        if not np.isfinite(x.asnumpy()).all():
            raise ValueError(f"{owner}: embeddings contain NaN or Inf")

    def forward(self, x, labels):
        if self.check_enabled and isinstance(x, nd.NDArray):
            self.check_inputs(x, labels)
        return super().forward(x, labels)

    def step(self, x, labels) -> None:
        """Advance training state after an optimiser step; stateless losses do nothing."""

    def state_items(self) -> dict:
        return {name: getattr(self, name) for name in self.state_names}


class SoftmaxHead(Loss):
    """Gluon twin of ``pytorch_impl.losses.base.SoftmaxHead``: class weights ``weight``
    (``rows_per_class`` C x D, N(0, 0.01)) and the ``scale`` (a real or "auto", resolved at
    build); ``joinable``, ``shardable``."""

    joinable = True
    shardable = True
    normalize_weight = True
    scale = None  # losses without a scale hyper-parameter (Softmax, SphereFace) keep None
    rows_per_class = 1
    state_from_target_cosines = False
    ranges = {"scale": SCALE_AUTO}
    state_names = ("weight",)

    def __init__(self, num_classes: int, embedding_size: int, **hyperparams):
        super().__init__(num_classes, embedding_size, **hyperparams)
        self.weight = self.params.get("weight",
                                      shape=(num_classes * self.rows_per_class, embedding_size),
                                      init=mx.init.Normal(0.01))


class MarginSoftmax(SoftmaxHead):
    """Gluon twin of ``pytorch_impl.losses.base.MarginSoftmax`` (formula documented there).

    ``target_logit(F, cos, **params)`` is the hook; ``params`` are the block's Parameters
    (SphereFace reads ``iteration``); ``penalty(F, x, |x|)`` where a loss defines it.
    """

    fused_head = True
    normalize_embedding = True
    scale_by_norm = False
    target_logit = None
    uses_norm = False  # True: the hook is target_logit(F, cos_y, |x|, **params)
    penalty = None  # hook: (F, x, |x| or None) -> scalar added to the CE; None adds nothing

    def norm_of(self, F, x):
        """|x| (B,) where the loss uses it (``scale_by_norm``, ``uses_norm``), else None."""
        return ops.row_norm(F, x) if self.scale_by_norm or self.uses_norm else None

    def hybrid_forward(self, F, x, labels, weight, **params):
        norm = self.norm_of(F, x)
        value = self.head(F, x, labels, weight, norm, **params)
        return value if self.penalty is None else value + self.penalty(F, x, norm)

    def head(self, F, x, labels, weight, norm, **params):
        """The head, given |x| (``norm``, (B,)) where the loss uses it (else None)."""
        if self.scale_by_norm:
            xs, r = x, norm
        elif self.normalize_embedding:
            xs, r = ops.l2_normalize(F, x, self.scale), self.scale
        else:
            xs, r = x, 1.0
        hook = None
        if self.target_logit is not None:
            extra = (norm,) if self.uses_norm else ()

            def hook(cos):
                return self.target_logit(F, ops.clamp_st(F, cos, -1.0, 1.0), *extra, **params)
        return ops.margin_cross_entropy(F, xs, weight, labels, r, self.normalize_weight, hook,
                                        self.num_classes)


class AuxTerm(gluon.HybridBlock, contract.Declared):
    """An auxiliary term of a joint objective (see pytorch_impl.losses.base.AuxTerm)."""

    state_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, embedding_size: int, **hyperparams):
        super().__init__()
        self.set_hyperparameters(hyperparams)

    def step(self, x, labels) -> None:
        pass

    def state_items(self) -> dict:
        return {name: getattr(self, name) for name in self.state_names}


class JointLoss(Loss, contract.DeclaredJoint):
    """Gluon twin of ``pytorch_impl.losses.base.JointLoss``: base + lambda_ x aux term."""

    def __init__(self, num_classes: int, embedding_size: int, lambda_: float = 0.01,
                 **hyperparams):
        super().__init__(num_classes, embedding_size, lambda_=lambda_)
        base_kw, aux_kw = self.split_hyperparameters(hyperparams)
        with self.name_scope():
            self.base = self.base_cls(num_classes, embedding_size, **base_kw)
            self.aux = self.aux_cls(num_classes, embedding_size, **aux_kw)
        self.base.check_enabled = False
        self.state_names = self.base.state_names + self.aux.state_names
        self.requires_pk_batches = self.base.requires_pk_batches

    @property
    def weight(self):
        return self.base.weight

    def hybrid_forward(self, F, x, labels):
        return self.base(x, labels) + self.lambda_ * self.aux(x, labels)

    def step(self, x, labels) -> None:
        self.base.step(x, labels)
        self.aux.step(x, labels)

    def state_items(self) -> dict:
        return {**self.base.state_items(), **self.aux.state_items()}


def loss_state(loss) -> dict[str, np.ndarray]:
    """Parameters and training state under canonical names ("weight", "centers", ...)."""
    out = {}
    for name, param in loss.state_items().items():
        value = param.data().asnumpy().copy()
        out[name] = value.astype(np.int64) if name in INTEGER_STATE else value
    return out


def load_loss_state(loss, state: dict[str, np.ndarray]) -> None:
    """Copy canonical state into ``loss``; missing/unexpected names or shapes raise ValueError."""
    items = loss.state_items()
    missing, unexpected = sorted(set(items) - set(state)), sorted(set(state) - set(items))
    if missing or unexpected:
        raise ValueError(f"{type(loss).__name__}: loss state mismatch; missing {missing}, "
                         f"unexpected {unexpected}")
    for name, param in items.items():
        value = np.asarray(state[name])
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"{type(loss).__name__}: state {name!r} must have shape "
                             f"{tuple(param.shape)}, got {tuple(value.shape)}")
        param.set_data(nd.array(value, dtype=param.dtype))
