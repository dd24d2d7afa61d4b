"""Generate the synthetic face data set (the suite's default): random parametric faces with
nuisance, in the InsightFace layout (train.rec/train.idx/property, lfw.bin, manifest.json).
Deterministic from --seed; --difficulty scales every nuisance (0 clean, 1 default, 2 very hard)."""

from __future__ import annotations

NAME = "synth"
HELP = "generate the synthetic InsightFace-layout face data set"
NEEDS_FRAMEWORKS = False


def add_arguments(parser):
    from common.synthetic import DEFAULTS

    parser.add_argument("out", help="output folder")
    parser.add_argument("--identities", type=int, default=DEFAULTS["num_identities"],
                        help="training identities")
    parser.add_argument("--images", type=int, default=DEFAULTS["images_per_identity"],
                        help="images per identity")
    parser.add_argument("--heldout", type=int, default=DEFAULTS["heldout_identities"],
                        help="extra identities, never trained on, for lfw.bin")
    parser.add_argument("--pairs", type=int, default=DEFAULTS["num_pairs"],
                        help="verification pairs in lfw.bin (multiple of 20; 0 = no lfw.bin)")
    parser.add_argument("--size", type=int, default=DEFAULTS["image_size"], help="image side")
    parser.add_argument("--difficulty", type=float, default=DEFAULTS["difficulty"],
                        help="nuisance strength in [0, 3]")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed")


def run(args) -> int:
    from common.synthetic import generate

    m = generate(args.out, num_identities=args.identities, images_per_identity=args.images,
                 num_pairs=args.pairs, heldout_identities=args.heldout, image_size=args.size,
                 difficulty=args.difficulty, seed=args.seed)
    print(f"wrote {args.out}: {m['num_identities']} identities x {m['images_per_identity']} "
          f"images, {m['num_pairs']} pairs from {m['heldout_identities']} held-out identities")
    return 0
