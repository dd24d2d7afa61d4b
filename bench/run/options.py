"""Command-line options generated from ``HarnessConfig``, checked before any framework loads.

One config, its flags generated from the fields (arcface_torch keeps one config object per
experiment; timm takes ``--model-kwargs``): ``run``, ``real`` and ``features`` add the fields
they expose with their own defaults, and ``config_from_args`` builds the config back.
``check`` validates everything that needs no framework (ranges, names against the manifest,
loss settings), so a typo fails in a fraction of a second, before torch, mxnet or any data
generation.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bench.run import loss_settings
from bench.run.config import HarnessConfig
from common import backends, manifest

FIELDS = {f.name: f for f in dataclasses.fields(HarnessConfig)}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Defaults as a user would type them; none after a bare flag (``--force``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.nargs == 0 or action.default in (None, argparse.SUPPRESS, ""):
            return text
        if "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


class Toggle(argparse.Action):
    """``--name`` / ``--no-name``; the help names the default as its flag, not as True/False."""

    def __init__(self, option_strings, dest, default=None, help=None, **_):
        flags = [s for s in option_strings if s.startswith("--")]
        strings = flags + [f"--no-{s[2:]}" for s in flags]
        shown = strings[0] if default else strings[-1]
        super().__init__(strings, dest, nargs=0, default=default,
                         help=f"{help} (default: {shown})" if help else None)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith("--no-"))

    def format_usage(self):
        return " | ".join(self.option_strings)


def command_line(skip=()) -> str:
    """The command this process runs, as a user would type it (``python -m bench ...``), less
    the arguments in ``skip`` (``--report-only``: a rebuild names the command that trained)."""
    import shlex
    import sys

    return "python -m bench " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a not in skip)


def csv_names(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_config_arguments(parser, names, defaults: dict | None = None,
                         helps: dict | None = None) -> None:
    """Flags for the ``HarnessConfig`` fields ``names`` (``--batch-size`` for batch_size)."""
    defaults, helps = defaults or {}, helps or {}
    base = HarnessConfig()
    for name in names:
        f = FIELDS[name]
        default = defaults.get(name, getattr(base, name))
        flag = "--" + name.replace("_", "-")
        text = helps.get(name, f.metadata.get("help", ""))
        if isinstance(default, bool):
            parser.add_argument(flag, action=Toggle, default=default, help=text)
        elif name == "loss_args":
            # parsed by config_from_args, so a malformed value gets our message, not argparse's
            parser.add_argument(flag, default="", metavar="SETTINGS", help=text)
        elif isinstance(default, tuple):
            shown = ",".join(default) or "all"
            parser.add_argument(flag, type=csv_names, default=shown, metavar="NAMES", help=text)
        else:
            kind = type(getattr(base, name))
            parser.add_argument(flag, type=kind, default=default, help=text,
                                choices=f.metadata.get("choices"))


def config_from_args(args, **fixed) -> HarnessConfig:
    """The config of the fields present in ``args`` (plus ``fixed``); the rest at defaults."""
    given = {k: getattr(args, k) for k in FIELDS if hasattr(args, k)}
    given.update(fixed)
    if isinstance(given.get("loss_args"), str):
        given["loss_args"] = loss_settings.parse(given["loss_args"])
    if given.get("losses") == ("all",):
        given["losses"] = ()
    return HarnessConfig(**given)


def check(cfg: HarnessConfig) -> list[str]:
    """Everything checkable without a framework; returns the run's loss labels.

    Raises ``ValueError`` naming the argument: a range, an unknown loss, backend or backbone,
    a loss setting the loss does not have or a value outside its range.
    """
    cfg.check()
    for b in cfg.backends:
        backends.check(b)
    if cfg.backbone not in manifest.backbone_names():
        raise ValueError(f"--backbone: unknown backbone {cfg.backbone!r}; known: "
                         f"{', '.join(manifest.backbone_names())}")
    return loss_settings.run_labels(cfg.losses, cfg.loss_args, manifest.loss_names())


def check_data(path: str | Path, generated: Path | None = None) -> None:
    """The data folder exists (unless it is the default folder that ``run`` generates)."""
    path = Path(path)
    if generated is not None and path.resolve() == Path(generated).resolve():
        return
    if not path.is_dir():
        raise FileNotFoundError(f"--data: folder {path} does not exist (expected train.rec, "
                                "train.idx, property and *.bin)")
