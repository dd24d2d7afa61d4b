"""A loss's own hyper-parameters on the command line, and the label that names them.

``--loss-args 'arcface:margin=0.3,scale=32;cosface:margin=0.4'`` (or a .json/.toml file
mapping loss -> {key: value}) gives ``{"arcface": {"margin": 0.3, "scale": 32}, ...}``. A cell
is named by its loss label: the registered name alone at the class defaults, else
``arcface[margin=0.3,scale=32.0]`` (keys sorted, settings equal to the default dropped), so two
margins of one loss are two cells, two rows and two hashes, while default cells keep theirs.
Framework-free: checked against ``common.manifest`` before torch or mxnet is imported.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from common import manifest


def _value(text: str):
    t = text.strip()
    if t in ("True", "False"):
        return t == "True"
    try:
        return json.loads(t)
    except json.JSONDecodeError:
        return t  # a string: the loss's own check names it if it is not allowed


def parse(text: str) -> dict[str, dict]:
    """``LOSS:KEY=VALUE,...;LOSS:...`` or a path to a .json/.toml file -> {loss: {key: value}}."""
    text = (text or "").strip()
    if not text:
        return {}
    path = Path(text)
    if path.suffix in (".json", ".toml"):
        return _read_file(path)
    out: dict[str, dict] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        loss, sep, body = part.partition(":")
        if not sep or not loss.strip():
            raise ValueError(f"--loss-args: {part!r} must be LOSS:KEY=VALUE[,KEY=VALUE...]")
        settings = out.setdefault(loss.strip(), {})
        for item in filter(None, (i.strip() for i in body.split(","))):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"--loss-args: {item!r} (loss {loss.strip()!r}) must be "
                                 "KEY=VALUE")
            settings[key.strip()] = _value(value)
    return out


def _read_file(path: Path) -> dict[str, dict]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"--loss-args: cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"--loss-args: {path} is not valid {path.suffix[1:]}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"--loss-args: {path} must map each loss name to a table of "
                         "{key: value}")
    return {str(k): dict(v) for k, v in data.items()}


def _text(v) -> str:
    if isinstance(v, float) and math.isfinite(v):
        return repr(v)
    return str(v)


def canonical(name: str, settings: dict) -> dict:
    """Checked settings without those equal to the defaults; ints given for floats as floats."""
    manifest.check_loss_args(name, settings)
    defaults = manifest.loss_hyperparameters(name)
    out = {}
    for key in sorted(settings):
        v = settings[key]
        if isinstance(defaults[key], float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if v != defaults[key] or type(v) is not type(defaults[key]):
            out[key] = v
    return out


def label(name: str, settings: dict | None = None) -> str:
    """The loss label of a cell: ``name`` at the defaults, else ``name[k=v,...]``."""
    kept = canonical(name, settings or {})
    if not kept:
        return name
    return f"{name}[{','.join(f'{k}={_text(v)}' for k, v in kept.items())}]"


def split(loss_label: str) -> tuple[str, dict]:
    """Inverse of ``label``: (registered name, settings)."""
    if not loss_label.endswith("]") or "[" not in loss_label:
        return loss_label, {}
    name, _, body = loss_label[:-1].partition("[")
    return name, {k: _value(v) for k, _, v in
                  (item.partition("=") for item in body.split(",") if item)}


def run_labels(names, loss_args: dict, known: list[str]) -> list[str]:
    """The loss labels of a run: ``names`` (registered names or labels; empty or "all" for
    every known loss), each with its ``loss_args`` applied. An unknown loss, a setting for a
    loss the run does not train (a typo must not be silently ignored), an unknown key or an
    out-of-range value raises ``ValueError``."""
    names = list(names) or list(known)
    if names == ["all"]:
        names = list(known)
    plain = [split(n)[0] for n in names]
    unknown = [n for n in dict.fromkeys(plain) if n not in known]
    if unknown:
        raise ValueError(f"--losses: unknown loss(es) {', '.join(unknown)}; known: "
                         f"{', '.join(known)}")
    unused = sorted(set(loss_args) - set(plain))
    if unused:
        why = "unknown loss" if set(unused) - set(known) else "add it to --losses"
        raise ValueError(f"--loss-args names {', '.join(unused)}, which this run does not "
                         f"train ({why})")
    out = []
    for name, given in (split(n) for n in names):
        out.append(label(name, {**given, **loss_args.get(name, {})}))
    return list(dict.fromkeys(out))
