"""Loss registry and argument checks shared by both backends' ``losses/base.py``.

One implementation, so the two backends cannot drift: the same registry rules (decorator,
a second registration of a name is an error, unknown names list the known ones) and the
same ``ValueError`` texts for bad hyper-parameters (tests/test_loss_contract.py compares them).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

MAX_SIZE = 2**31 - 1


class LossRegistry:
    """name -> loss class; one instance per backend."""

    def __init__(self) -> None:
        self.classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator: make the loss buildable as ``build_loss(name, ...)``."""

        def deco(cls: type) -> type:
            if name in self.classes:
                raise ValueError(
                    f"loss {name!r} is already registered ({self.classes[name].__name__})")
            self.classes[name] = cls
            cls.registered_name = name
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self.classes)

    def get(self, name: str) -> type:
        if name not in self.classes:
            raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(self.names())}")
        return self.classes[name]

    def build(self, name: str, num_classes: int, embedding_size: int, **hyperparams):
        """Build a registered loss; unknown names or hyper-parameters raise ValueError."""
        cls = self.get(name)
        allowed = cls.hyperparameters()
        unknown = sorted(set(hyperparams) - set(allowed))
        if unknown:
            raise ValueError(
                f"{cls.__name__}: unknown hyper-parameter(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(f'{k}={v!r}' for k, v in allowed.items()) or 'none'}"
            )
        return cls(num_classes=num_classes, embedding_size=embedding_size, **hyperparams)


def check_real(owner: str, name: str, value, lo: float, hi: float,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` must be a finite real in the interval; returns it as float."""
    lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
    interval = f"{lb}{lo:g}, {hi:g}{rb}"
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (math.isfinite(v) and (v > lo if lo_open else v >= lo)
              and (v < hi if hi_open else v <= hi))
    if not ok:
        raise ValueError(f"{owner}: argument '{name}' must be a real number in {interval}, "
                         f"got {value!r}")
    return float(value)


def check_int(owner: str, name: str, value, lo: int, hi: int) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and lo <= value <= hi
    if not ok:
        raise ValueError(f"{owner}: argument '{name}' must be an integer in [{lo}, {hi}], "
                         f"got {value!r}")
    return int(value)


def check_bool(owner: str, name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: argument '{name}' must be True or False, got {value!r}")
    return bool(value)
