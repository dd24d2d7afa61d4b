"""Print what a data file holds: for a .rec (or an InsightFace folder) the layout, image and
identity counts and image size; for a verification .bin the pairs, same/different balance per
fold and the image encoding."""

from __future__ import annotations

NAME = "info"
HELP = "summarise a .rec / InsightFace folder / verification .bin"
NEEDS_FRAMEWORKS = False


def add_arguments(parser):
    parser.add_argument("paths", nargs="+", help=".rec files, InsightFace folders or .bin files")


def run(args) -> int:
    from common.convert import describe

    for path in args.paths:
        print(describe(path))
    return 0
