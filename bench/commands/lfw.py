"""LFW protocol files -> InsightFace data files.

  pairs:  LFW-style images (<images>/<Name>/<Name>_NNNN.jpg) + pairs.txt (header '10 300', or
          View 1's single count) -> verification .bin, pairs in file order (the file's folds are
          the protocol's 10 consecutive folds); images already at --size keep their original bytes.
  people: images + a View 1 people file (peopleDevTrain.txt) -> train.rec/idx/property of those
          people (identities with fewer than --min-images images skipped) + identities.json."""

from __future__ import annotations

import argparse

NAME = "lfw"
HELP = "LFW pairs file -> verification .bin; View 1 people file -> train.rec"
NEEDS_FRAMEWORKS = False


def add_arguments(parser):
    sub = parser.add_subparsers(dest="lfw_command", metavar="{pairs,people}",
                                help="which LFW list to convert")
    sub.required = True
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("pairs", help="pairs file -> verification .bin", formatter_class=fmt)
    p.add_argument("images", help="folder of <Name>/<Name>_NNNN.jpg")
    p.add_argument("pairs_file", help="pairs.txt / pairsDevTest.txt")
    p.add_argument("out", help="output .bin path")
    q = sub.add_parser("people", help="View 1 people file -> train.rec", formatter_class=fmt)
    q.add_argument("images", help="folder of <Name>/<Name>_NNNN.jpg")
    q.add_argument("people_file", help="peopleDevTrain.txt")
    q.add_argument("out", help="output folder")
    q.add_argument("--min-images", type=int, default=2, help="skip people with fewer images")
    for x in (p, q):
        x.add_argument("--size", type=int, default=112, help="square image side")
        x.add_argument("--quality", type=int, default=95, help="JPEG quality when re-encoding")


def run(args) -> int:
    from common import lfw

    if args.lfw_command == "pairs":
        n = lfw.pairs_to_bin(args.images, args.pairs_file, args.out, size=args.size,
                             quality=args.quality)
        print(f"wrote {args.out}: {n} pairs")
    else:
        s = lfw.people_to_rec(args.images, args.people_file, args.out, size=args.size,
                              min_images=args.min_images, quality=args.quality)
        print(f"wrote {args.out}: {len(s['labels'])} identities, {s['images']} images")
    return 0
