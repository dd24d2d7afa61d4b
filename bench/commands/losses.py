"""List the registered losses with their hyper-parameters (default and valid values) and
capabilities, from common/manifest.json (no framework is imported). These are the keys that
``--loss-args`` takes, e.g. ``--loss-args 'arcface:margin=0.3,scale=32'``; margins are in
radians, SphereFace's margin is an integer. Formulas: docs/SPEC.md section 1."""

from __future__ import annotations

NAME = "losses"
HELP = "list the losses, their hyper-parameters (defaults, valid values) and capabilities"
NEEDS_FRAMEWORKS = False


def add_arguments(parser) -> None:
    parser.add_argument("names", nargs="*", metavar="LOSS",
                        help="losses to show (default: every registered loss)")


def check(args) -> None:
    from common import manifest

    for name in args.names:
        manifest.loss_hyperparameters(name)  # an unknown name lists the known ones


def valid_values(spec: dict) -> str:
    """A hyper-parameter's valid values as a reader writes them: [0, 3.14159], (0, 1e+06]."""
    if spec["type"] == "bool":
        return "True or False"
    bounds = [b if isinstance(b, str) else f"{b:g}" for b in (spec["lo"], spec["hi"])]
    left = "(" if spec.get("lo_open") else "["
    right = ")" if spec.get("hi_open") else "]"
    kind = "integer" if spec["type"] == "int" else "real"
    auto = f" or 'auto' ({spec['auto']} rule)" if spec.get("auto") else ""
    return f"{kind} in {left}{bounds[0]}, {bounds[1]}{right}{auto}"


def run(args) -> int:
    from common import manifest

    data = manifest.load()["losses"]
    for name in args.names or manifest.loss_names():
        entry = data[name]
        caps = [k for k, v in entry["capabilities"].items() if v]
        print(f"{name} ({entry['class']}){': ' + ', '.join(caps) if caps else ''}")
        for key, spec in entry["hyperparameters"].items():
            print(f"  {key} = {spec['default']!r}  ({valid_values(spec)})")
    return 0
