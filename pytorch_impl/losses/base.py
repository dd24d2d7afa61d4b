"""The loss bases, the registries and loss-state exchange (PyTorch).

Mirrors ``gluon_impl/losses/base.py`` name for name; the error texts are identical in both
backends (tests/losses/test_loss_contract.py compares them). Notation and formulas: SPEC.md
section 1.
What a loss declares (hyper-parameter ranges, capabilities) and how it is checked is the
framework-free ``common.contract``; the registries are ``common.registry.Registry``.

A new loss is one module of this package: a subclass of ``MarginSoftmax`` (a ``target_logit``
hook), ``SoftmaxHead`` or ``Loss``, decorated with ``@register_loss(name)``, its defaults in
the constructor's signature and its valid values in ``ranges``; the package imports it (no
list to edit), and ``joinable`` losses get their "<name>+<aux>" joints generated.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

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

LOSSES = Registry("loss", "losses")
AUX_TERMS = Registry("auxiliary term")  # the "<aux>" of the joint objectives
register_loss = LOSSES.register
register_aux = AUX_TERMS.register
list_losses = LOSSES.names
loss_class = LOSSES.get


def build_loss(name: str, num_classes: int, embedding_size: int, **hyperparams):
    """Build a registered loss; unknown names or hyper-parameters raise ValueError."""
    cls = loss_class(name)
    contract.check_known(cls.__name__, cls.hyperparameters(), hyperparams)
    return cls(num_classes=num_classes, embedding_size=embedding_size, **hyperparams)


class Loss(nn.Module, contract.Declared):
    """Shared part of every loss: sizes, hyper-parameter checks, input checks, ``step`` and the
    state names.

    The constructor passes its hyper-parameters to this one, which checks them against
    ``ranges`` and sets them as attributes (``common.contract.Declared``). Subclasses implement
    ``compute(x, labels)``; ``forward`` checks the inputs, runs the loss in float32 or float64
    (half-precision embeddings from an autocast backbone are upcast, and autocast is off inside
    the loss) and returns the scalar.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, embedding_size: int, **hyperparams):
        super().__init__()
        owner = type(self).__name__
        self.num_classes = check_int(owner, "num_classes", num_classes, 1, MAX_SIZE)
        self.embedding_size = check_int(owner, "embedding_size", embedding_size, 1, MAX_SIZE)
        self.set_hyperparameters(hyperparams, self.num_classes)

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


class SoftmaxHead(Loss):
    """Softmax cross-entropy over per-class logits, with class weights ``weight``
    (``rows_per_class`` C x D rows, class-major, N(0, 0.01) at build) and, where the loss has
    one, the constant ``scale`` s: a real in (0, 1e6] or "auto", AdaCos's fixed scale
    sqrt(2) ln(C - 1) for the C classes (``common.contract.adacos_scale``), resolved at build,
    so ``scale`` is always the number used (``SCALE_AUTO``; losses whose logits are not
    cosines, L2Softmax, declare the plain ``SCALE``).

    Declares ``joinable`` and ``shardable``, and the Partial-FC protocol
    (pytorch_impl/partial_fc.py), with defaults that a subclass overrides where it differs:
    ``rows_per_class``; ``scaled_class_logits(x, weight)`` (s cos for the classes of
    ``weight``), ``target_logit(cos_y)``, ``negative_rule(logits, cos_y)`` (a rule on the
    non-target logits; none by default); ``state_from_target_cosines``: True where ``step`` is
    ``advance(target_cosines(x, weight, labels))``, so that a shard can compute its part.
    """

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
        self.weight = nn.Parameter(torch.empty(num_classes * self.rows_per_class,
                                               embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def scaled_class_logits(self, x, weight):
        """s cos(x, W_j) for the classes of ``weight``."""
        xs = x * (self.scale / ops.row_norm(x))[:, None]  # the scale on the B x D side
        return xs @ ops.l2_normalize(weight.to(x.dtype)).t()

    def negative_rule(self, logits, cos_y):
        """The non-target logits given every row's target cosine: unchanged by default."""
        return logits


class MarginSoftmax(SoftmaxHead):
    """Softmax cross-entropy over (optionally normalised) logits with a target-logit hook.

    logits_j = r_i * <x_i^', W_j^'> where x' = x^ (``normalize_embedding``) or x, W' = W^
    (``normalize_weight``) or W, and r_i = ``scale`` (or |x_i| when the subclass uses the
    embedding norm, SphereFace). The target column alone becomes r_i * target_logit(cos_y),
    cos_y clamped to [-1, 1]; a subclass defines ``target_logit`` and nothing else.
    The scale is applied on the B x D side, the head is ``ops.margin_cross_entropy`` (which
    also normalises the embeddings, ``embed_scale``). ``penalty(x, |x|)``, where a loss defines
    it, is added to the cross-entropy: terms that do not involve W (MagFace's regulariser).
    """

    fused_head = True
    normalize_embedding = True
    scale_by_norm = False  # r_i = |x_i| instead of the constant scale (SphereFace)
    target_logit = None  # hook: cos_y (B,) -> new target cosine (B,); None keeps the target
    uses_norm = False  # True: the hook is target_logit(cos_y, |x|) (MagFace, AdaFace)
    penalty = None  # hook: (x, |x| or None) -> scalar added to the CE; None adds nothing

    def norm_of(self, x):
        """|x| (B,) where the loss uses it (``scale_by_norm``, ``uses_norm``), else None."""
        return ops.row_norm(x) if self.scale_by_norm or self.uses_norm else None

    def compute(self, x, labels):
        norm = self.norm_of(x)
        value = self.head(x, labels, norm)
        return value if self.penalty is None else value + self.penalty(x, norm)

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


class AuxTerm(nn.Module, contract.Declared):
    """An auxiliary term of a joint objective (centre, ring): forward -> unweighted scalar.

    Registered with ``@register_aux(name)``; its hyper-parameters are declared and checked as
    a loss's (signature defaults, ``ranges``).
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int, embedding_size: int, **hyperparams):
        super().__init__()
        self.set_hyperparameters(hyperparams)

    @torch.no_grad()
    def step(self, x, labels) -> None:
        pass

    def state_items(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.state_names}


class JointLoss(Loss, contract.DeclaredJoint):
    """base loss + lambda_ * auxiliary term (e.g. "ArcFace + 0.01 x Center").

    ``base_cls`` and ``aux_cls`` are set by the subclass (center.py, ring.py) or generated
    (``common.contract.register_joints``); hyper-parameters named by ``aux_cls`` go to the
    term, the others to the base loss.
    """

    def __init__(self, num_classes: int, embedding_size: int, lambda_: float = 0.01,
                 **hyperparams):
        super().__init__(num_classes, embedding_size, lambda_=lambda_)
        base_kw, aux_kw = self.split_hyperparameters(hyperparams)
        self.base = self.base_cls(num_classes, embedding_size, **base_kw)
        self.aux = self.aux_cls(num_classes, embedding_size, **aux_kw)
        self.state_names = self.base.state_names + self.aux.state_names
        self.requires_pk_batches = self.base.requires_pk_batches

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
