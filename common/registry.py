"""One registry class for the losses, their auxiliary terms and the backbones of both backends.

timm's pattern: each class registers itself with a decorator, ``names()`` drives the tests and
the bench, registering a name twice is an error and an unknown name raises a ``ValueError``
that lists the known ones. ``import_submodules`` is the discovery: a package imports every
module it holds, so no hand-kept import list can forget one.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable


def unknown_name(kind: str, plural: str, name: str, known) -> ValueError:
    """The error for a name that is not registered (``common.manifest`` raises it too)."""
    return ValueError(f"unknown {kind} {name!r}; known {plural}: {', '.join(known)}")


class Registry:
    """name -> class (or factory); ``kind`` and ``plural`` name the things in the error texts."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind, self.plural = kind, plural or f"{kind}s"
        self.entries: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        """Decorator: make ``factory`` buildable under ``name`` (its ``registered_name``)."""

        def deco(factory: Callable) -> Callable:
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is already registered "
                                 f"({getattr(self.entries[name], '__name__', self.entries[name])})")
            self.entries[name] = factory
            factory.registered_name = name
            return factory

        return deco

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self.entries)

    def get(self, name: str) -> Callable:
        if name not in self.entries:
            raise unknown_name(self.kind, self.plural, name, self.names())
        return self.entries[name]


def import_submodules(package: str) -> list[str]:
    """Import every module of ``package`` (sorted; not sub-packages, not ``_private`` ones), so
    that their ``register`` decorators run; returns the module names."""
    path = sys.modules[package].__path__
    names = sorted(m.name for m in pkgutil.iter_modules(path)
                   if not m.ispkg and not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
