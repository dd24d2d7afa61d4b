"""Dump every image of a .rec (an InsightFace folder or a .rec path with its .idx) to
OUT/<label>/<key>.<jpg|png>, with the payload bytes exactly as stored."""

from __future__ import annotations

NAME = "dump"
HELP = "write the images of a .rec to a folder, one sub-folder per label"
NEEDS_FRAMEWORKS = False


def add_arguments(parser):
    parser.add_argument("source", help="folder with train.rec/train.idx/property, or a .rec file")
    parser.add_argument("out", help="output folder")


def run(args) -> int:
    from common.convert import dump_rec

    print(f"wrote {dump_rec(args.source, args.out)} images to {args.out}")
    return 0
