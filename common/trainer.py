"""What every backend's Trainer shares, framework-free (the trainers themselves are
``pytorch_impl/train.py``, ``gluon_impl/train.py``, ``pytorch_impl/distributed_train.py`` and
``gluon_impl/data_parallel.py``; ``common.trainloop.fit`` drives any of them).

- ``StepOutput``: what ``train_step`` returns.
- ``named_trainable``: the trainable parameters under the names their momentum buffers carry in
  checkpoints (``momentum/backbone.<name>``, ``momentum/loss.<name>``), in the same order in
  both backends; each backend passes its framework's parameter listing and trainable test.
- ``check_sgd_args``: the optimiser arguments' checks, the same messages in every trainer.
- ``predicts_with_normalized_weight``: whether training accuracy uses cos(x, W_j) or W.x.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class StepOutput:
    loss: float
    correct: int  # argmax of the class-weight logits == label; -1 when the loss has no weight
    head_seconds: float  # loss forward + backward, synchronised


def named_trainable(backbone_params: Iterable[tuple[str, Any]],
                    loss_params: Iterable[tuple[str, Any]],
                    trainable: Callable[[Any], bool]) -> list[tuple[str, Any]]:
    """``[("backbone.<k>", p), ..., ("loss.<k>", p), ...]`` of the parameters ``trainable``
    accepts, in the order given (backbone first)."""
    named = [("backbone." + k, p) for k, p in backbone_params]
    named += [("loss." + k, p) for k, p in loss_params]
    return [(k, p) for k, p in named if trainable(p)]


def decayed(shape, decay_all: bool = False) -> bool:
    """Whether weight decay applies to a parameter of this shape: kernels and class weights
    (rank > 1) only, the "no bias decay" of Goyal et al. 2017 that our trainers use; every
    parameter with ``decay_all`` (arcface_torch's rule: BatchNorm, bias and PReLU too)."""
    return bool(decay_all) or (shape is not None and len(shape) > 1)


def check_sgd_args(momentum: float, weight_decay: float) -> None:
    """ValueError unless 0 <= momentum < 1 and weight_decay >= 0."""
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")


def predicts_with_normalized_weight(loss) -> bool:
    """True when the loss normalises its class weights (the default); a joint objective
    (arcface+center) predicts with its base loss's weight."""
    return bool(getattr(getattr(loss, "base", loss), "normalize_weight", True))
