"""The one backend selector: ``load("pytorch")`` / ``load("gluon")`` -> the backend package.

Each ``*_impl`` package has the same face, so callers never branch on the backend's name:
``pkg.losses`` (``build_loss``, ``list_losses``, ``loss_state``, ``load_loss_state``),
``pkg.backbones`` (``build_backbone``, ``list_backbones``), ``pkg.train`` (``Trainer``) and
``pkg.transfer`` (``export_params``, ``import_params``). Importing this module imports no
framework; ``load`` does (keras 3 keeps its backend choice in one place the same way).
"""

from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = ("pytorch", "gluon")
PACKAGES = {"pytorch": "pytorch_impl", "gluon": "gluon_impl"}
FACE = ("losses", "backbones", "train", "transfer")


def check(name: str) -> str:
    if name not in PACKAGES:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return name


def load(name: str) -> ModuleType:
    """The backend package with its face modules imported (``load(b).losses.build_loss``)."""
    package = importlib.import_module(PACKAGES[check(name)])
    for part in FACE:
        importlib.import_module(f"{package.__name__}.{part}")
    return package
