"""What both backends register, readable without importing torch or mxnet.

``common/manifest.json`` is generated from the registries by ``python -m bench manifest``
(never hand-edited; tests/losses/test_loss_manifest.py keeps it equal to both backends). It holds,
per loss, the class name, each hyper-parameter's default, valid values and owner (the class
whose error text names it) and the capabilities; and the backbone names. The CLI checks
``--losses`` and ``--loss-args`` here, with the constructors' own ``ValueError`` texts, before
any framework is imported.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from common import contract
from common.registry import unknown_name

PATH = Path(__file__).with_name("manifest.json")
STALE = "common/manifest.json differs from the registries: run `python -m bench manifest`"


@lru_cache(maxsize=1)
def load() -> dict:
    return json.loads(PATH.read_text())


def loss_names() -> list[str]:
    """Registered loss names, sorted (joint objectives included), as ``list_losses()``."""
    return list(load()["losses"])


def backbone_names() -> list[str]:
    """Registered backbone names, sorted, as ``list_backbones()``."""
    return list(load()["backbones"])


def _loss(name: str) -> dict:
    losses = load()["losses"]
    if name not in losses:
        raise unknown_name("loss", "losses", name, losses)
    return losses[name]


def loss_hyperparameters(name: str) -> dict:
    """{key: default} of loss ``name``, in the order ``build_loss`` checks them."""
    return {k: v["default"] for k, v in _loss(name)["hyperparameters"].items()}


def auto_keys(name: str) -> list[str]:
    """The hyper-parameters of loss ``name`` that also take ``"auto"`` (a rule resolves them
    with the class count: the normalised losses' ``scale``, SPEC section 1)."""
    return [k for k, v in _loss(name)["hyperparameters"].items() if v.get("auto")]


def capabilities(name: str) -> dict[str, bool]:
    """The declared capabilities of loss ``name`` (``common.contract.CAPABILITIES``)."""
    return dict(_loss(name)["capabilities"])


def check_loss_args(name: str, args: dict) -> dict:
    """Check ``args`` ({key: value}) for ``build_loss(name, **args)``: an unknown loss or key,
    or a value out of range, raises the ``ValueError`` that ``build_loss`` would; returns the
    checked values of ``args`` (ints given for reals as floats)."""
    entry = _loss(name)
    hps = entry["hyperparameters"]
    defaults = {k: v["default"] for k, v in hps.items()}
    contract.check_known(entry["class"], defaults, args)
    specs = {k: (v["owner"], contract.spec_from_json(v)) for k, v in hps.items()}
    checked = contract.check_values(specs, {**defaults, **args})
    return {k: checked[k] for k in args}


# ---- generation (from a backend's registries; the command imports the frameworks) ----------

def generate(list_losses, loss_class, list_backbones) -> dict:
    """The manifest of one backend, from its ``list_losses``, ``loss_class`` and
    ``list_backbones``."""
    return {"generated_by": "python -m bench manifest",
            "losses": {name: contract.describe(loss_class(name)) for name in list_losses()},
            "backbones": list(list_backbones())}


def _dump(obj, indent: int = 0) -> str:
    """JSON with one line per innermost table (a hyper-parameter, the capabilities)."""
    if isinstance(obj, dict) and any(isinstance(v, (dict, list)) for v in obj.values()):
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj)


def text(data: dict) -> str:
    """The file's text for ``data`` (what ``python -m bench manifest`` writes)."""
    return _dump(data) + "\n"
