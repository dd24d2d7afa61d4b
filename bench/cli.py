"""``python -m bench``: one sub-command per module in ``bench/commands``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``, and optionally ``check(args)`` (every argument that can be checked
without a framework: it runs before torch or mxnet is imported and before any data is
generated) and ``NEEDS_FRAMEWORKS = False``. Adding a module adds a sub-command, with no edit
here. An error ends the process with ``error: ...`` as its last line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import bench.commands
from bench.run.options import HelpFormatter


def _command_modules():
    for info in sorted(pkgutil.iter_modules(bench.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"bench.commands.{info.name}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, the other commands get no options (their ``add_arguments``
    may import what a command needs, e.g. OpenCV for a default; this one's check stays fast)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Face-recognition margin losses in PyTorch and MXNet-Gluon: data tools, "
            "the two-backend comparison harness, evaluation and performance reports."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
        help="CPU threads for both frameworks (sets OMP_NUM_THREADS before mxnet loads)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__ or module.HELP,
                           formatter_class=HelpFormatter)
        if only is None or only == module.NAME:
            module.add_arguments(p)
        p.set_defaults(_run=module.run, _check=getattr(module, "check", None),
                       _needs_frameworks=getattr(module, "NEEDS_FRAMEWORKS", True))
    return parser


ERRORS = (ValueError, FileNotFoundError, OSError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = {m.NAME for m in _command_modules()}
    parser = build_parser(only=next((a for a in argv if a in names), None))
    args = parser.parse_args(argv)
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be an integer >= 1, got {args.threads}")
        if args._check is not None:
            args._check(args)
        if args._needs_frameworks:
            from bench.runtime import configure_threads

            configure_threads(args.threads)
        from bench.report.results import git_commit

        git_commit()  # fixed now: results record the code this process runs, not a later HEAD
        return int(args._run(args) or 0)
    except ERRORS as exc:
        sys.stdout.flush()
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
