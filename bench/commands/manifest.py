"""Write common/manifest.json from the registries of both backends: every loss (joint
objectives included) with its hyper-parameters (default, valid values, the class whose error
names it) and capabilities, and the backbone names. The CLI checks --losses and --loss-args
against it without importing torch or mxnet; run this after adding or changing a loss or a
backbone (tests/losses/test_loss_manifest.py fails until you do). Refuses to write if the two
backends disagree."""

from __future__ import annotations

NAME = "manifest"
HELP = "regenerate common/manifest.json from both backends' registries"


def add_arguments(parser):
    parser.add_argument("--check", action="store_true",
                        help="only compare the file with the registries (exit 1 if it differs)")


def run(args) -> int:
    from common import backends, manifest

    built = {}
    for name in backends.BACKENDS:
        pkg = backends.load(name)
        built[name] = manifest.generate(pkg.losses.list_losses, pkg.losses.base.loss_class,
                                        pkg.backbones.list_backbones)
    first, *others = backends.BACKENDS
    for other in others:
        if built[other] != built[first]:
            raise ValueError(f"the {first} and {other} registries differ; make them equal "
                             f"first (tests/losses/test_loss_contract.py says where)")
    text = manifest.text(built[first])
    current = manifest.PATH.read_text() if manifest.PATH.is_file() else ""
    if args.check:
        print("up to date" if text == current else manifest.STALE)
        return 0 if text == current else 1
    if text != current:
        manifest.PATH.write_text(text)
    print(f"{'wrote' if text != current else 'unchanged:'} {manifest.PATH} "
          f"({len(built[first]['losses'])} losses, {len(built[first]['backbones'])} backbones)")
    return 0
