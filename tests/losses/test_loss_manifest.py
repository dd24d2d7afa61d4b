"""common/manifest.json against the registries of both backends, and its checks against the
constructors: ``check_loss_args`` must refuse exactly what ``build_loss`` refuses, with the
same text, so that the CLI can check loss settings before importing a framework."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from common import contract, manifest
from gluon_impl import backbones as GB
from gluon_impl import losses as GL
from pytorch_impl import backbones as TB
from pytorch_impl import losses as TL

NAMES = TL.list_losses()
BACKENDS = {"torch": (TL, TB), "gluon": (GL, GB)}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_manifest_is_the_registries(backend):
    losses, backbones = BACKENDS[backend]
    built = manifest.generate(losses.list_losses, losses.base.loss_class,
                              backbones.list_backbones)
    assert manifest.text(built) == manifest.PATH.read_text(), manifest.STALE
    assert manifest.loss_names() == losses.list_losses()
    assert manifest.backbone_names() == backbones.list_backbones()


@pytest.mark.parametrize("name", NAMES)
def test_manifest_reads_as_the_classes(name):
    for losses, _ in BACKENDS.values():
        cls = losses.base.loss_class(name)
        assert manifest.loss_hyperparameters(name) == cls.hyperparameters()
        assert manifest.capabilities(name) == cls.capabilities()


def _bad_values(spec, bounds: dict) -> list:
    """Values the spec refuses: outside each end, on an open end, of the wrong type."""
    if isinstance(spec, contract.Bool):
        return [1, "yes", None]
    lo, hi = (bounds[b] if isinstance(b, str) else b for b in (spec.lo, spec.hi))
    out = [lo - 1, hi + 1, True, "0.5"]
    if isinstance(spec, contract.Int):
        return out + [lo + 0.5]
    out += [math.nan, math.inf]
    out += [lo] if spec.lo_open else []
    out += [hi] if spec.hi_open else []
    out += ["autox", "Auto"] if spec.auto else []  # "auto" alone is a value (scale="auto")
    return out


def _error(fn) -> str:
    with pytest.raises(ValueError) as err:
        fn()
    return str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_check_loss_args_refuses_what_build_loss_refuses(name):
    cls = TL.base.loss_class(name)
    defaults = cls.hyperparameters()
    cases = [{"nosuch": 1.0}, {**{k: v for k, v in list(defaults.items())[:1]}, "s": 30}]
    for key, (_, spec) in cls.specs().items():
        cases += [{key: v} for v in _bad_values(spec, defaults)]
    for args in cases:
        expect = _error(lambda a=args: manifest.check_loss_args(name, a))
        for losses, _ in BACKENDS.values():
            got = _error(lambda a=args, m=losses: m.build_loss(name, num_classes=4,
                                                               embedding_size=3, **a))
            assert got == expect, (name, args)


def test_a_bound_that_names_another_argument():
    """MagFace's upper_norm >= lower_norm: the bound follows the given (or default) value."""
    manifest.check_loss_args("magface", {"lower_norm": 2.0, "upper_norm": 3.0})
    text = _error(lambda: manifest.check_loss_args("magface+ring", {"upper_norm": 5.0}))
    assert text == ("MagFace: argument 'upper_norm' must be a real number in (10, 1e+06], "
                    "got 5.0")
    assert text == _error(lambda: TL.build_loss("magface+ring", 4, 3, upper_norm=5.0))


def test_check_loss_args_accepts_and_returns_the_checked_values():
    assert manifest.check_loss_args("arcface", {"margin": 0.3, "scale": 32}) == {
        "margin": 0.3, "scale": 32.0}
    assert manifest.check_loss_args("sphereface+center", {"margin": 2, "alpha": 0.1}) == {
        "margin": 2, "alpha": 0.1}
    assert _error(lambda: manifest.check_loss_args("nosuch", {})) == _error(
        lambda: TL.build_loss("nosuch", 4, 3))


def test_joints_are_every_joinable_loss_times_every_term():
    aux = TL.base.AUX_TERMS.names()
    assert aux == GL.base.AUX_TERMS.names() == ["center", "ring"]
    joinable = [n for n in NAMES if manifest.capabilities(n)["joinable"]]
    assert "softmax" not in joinable and {"arcface", "subcenter_arcface"} <= set(joinable)
    assert sorted(n for n in NAMES if "+" in n) == sorted(f"{b}+{a}" for b in joinable
                                                           for a in aux)


def test_every_loss_module_is_discovered():
    """No import list to keep: every module of losses/ registered something."""
    for losses in (TL, GL):
        folder = Path(losses.__file__).parent
        modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "base"}
        found = {losses.base.loss_class(n).__module__.rsplit(".", 1)[1] for n in NAMES}
        found |= {losses.base.AUX_TERMS.get(n).__module__.rsplit(".", 1)[1]
                  for n in losses.base.AUX_TERMS.names()}
        assert modules <= found, modules - found


def test_every_hyperparameter_has_a_range():
    class Bare(TL.base.MarginSoftmax):
        def __init__(self, num_classes: int, embedding_size: int, scale: float = 64.0,
                     width: float = 1.0):
            super().__init__(num_classes, embedding_size, scale=scale, width=width)

    with pytest.raises(TypeError, match="width have no entry in `ranges`"):
        Bare(3, 2)
