"""Convert a photo folder (root/<identity>/<images>, any format Pillow/OpenCV reads: jpg, png,
pgm, gif; greyscale -> RGB) into InsightFace's train.rec/train.idx/property plus a verification
.bin built from identities held out of training (10 folds, half same / half different pairs),
and split.json recording which identity went where. Seeded and deterministic."""

from __future__ import annotations

NAME = "convert"
HELP = "photo folder -> train.rec/idx/property + held-out verification .bin"
NEEDS_FRAMEWORKS = False


def add_arguments(parser):
    parser.add_argument("root", help="photo folder: root/<identity>/<images>")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--size", type=int, default=112, help="square image side (resize + pad)")
    parser.add_argument("--heldout", type=int, default=None,
                        help="identities held out for the .bin (default: a fifth, at least 2; "
                        "0 = no .bin)")
    parser.add_argument("--pairs", type=int, default=None,
                        help="verification pairs, a multiple of 20 (default: as many as the "
                        "held-out identities allow, at most 6000)")
    parser.add_argument("--bin-name", default="heldout.bin", help="file name of the .bin")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of re-encoded images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out draw and pairs")


def run(args) -> int:
    from common.convert import convert_folder

    s = convert_folder(args.root, args.out, size=args.size, heldout=args.heldout,
                       num_pairs=args.pairs, seed=args.seed, quality=args.quality,
                       bin_name=args.bin_name)
    print(f"wrote {args.out}: {s['train_identities']} identities, {s['train_images']} images; "
          f"{len(s['heldout'])} held out -> {s.get('pairs', 0)} pairs in {s.get('bin', '-')}")
    return 0
