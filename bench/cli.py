"""``python -m bench``: one sub-command per module in ``bench/commands``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; adding a module adds a sub-command, with no edit here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import bench.commands


def _command_modules():
    for info in sorted(pkgutil.iter_modules(bench.commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"bench.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Face-recognition margin losses in PyTorch and MXNet-Gluon: data tools, "
            "the two-backend comparison harness, evaluation and performance reports."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__ or module.HELP,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _needs_frameworks=getattr(module, "NEEDS_FRAMEWORKS", True))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args._needs_frameworks:
        from bench.runtime import configure_threads

        configure_threads(args.threads)
    from bench.results import git_commit

    git_commit()  # fixed now: results record the code this process runs, not a later HEAD
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
