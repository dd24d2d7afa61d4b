"""Performance report: every figure a ratio against a baseline measured in the same run.

Runs the sections in bench/perf/ (loss heads, data reader, verification, training throughput,
scaling), and writes results/perf/perf.csv (raw rows: median, min and max seconds of the repeats,
ratio to the baseline), results/perf/README.md (one table per section, goals marked) and a plot
per section. The machine is shared and noisy: each case is repeated and the median reported,
with the min-max spread beside it.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path

NAME = "perf"
HELP = "time heads, reader, verification and training against baselines; write results/perf/"


def add_arguments(parser) -> None:
    import bench.perf

    names = sorted(m.name for m in pkgutil.iter_modules(bench.perf.__path__)
                   if not m.name.startswith("_"))
    parser.add_argument(
        "--sections", nargs="+", default=names, choices=names, metavar="SECTION",
        help=f"which sections to run (choices: {', '.join(names)})",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="fewer repeats and smaller shapes (a check that the report runs, not figures to cite)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/perf"),
                        help="folder for perf.csv, README.md and the plots")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rebuild README.md and the plots from OUT/perf.csv")


def run(args) -> int:
    from bench.perf_report import read_rows, write_report

    if args.render_only:
        rows = read_rows(args.out / "perf.csv")
        sections = [s for s in args.sections if any(r["section"] == s for r in rows)]
        write_report(rows, args.out, sections=sections, failures={}, quick=False)
        print(f"[perf] rebuilt {args.out}/README.md from {args.out}/perf.csv")
        return 0
    rows, failures = [], {}
    for name in args.sections:
        module = importlib.import_module(f"bench.perf.{name}")
        print(f"[perf] section {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            section_rows = module.measure(quick=args.quick)
        except Exception as exc:  # a broken section must not lose the others' figures
            failures[name] = f"{type(exc).__name__}: {exc}"
            print(f"[perf] section {name} failed: {failures[name]}", flush=True)
            continue
        rows += section_rows
        print(f"[perf] section {name}: {len(section_rows)} rows in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        # after every section, so a crash (or the OOM killer) later keeps what was measured
        done = args.sections[:args.sections.index(name) + 1]
        write_report(rows, args.out, sections=done, failures=failures, quick=args.quick)
    write_report(rows, args.out, sections=args.sections, failures=failures, quick=args.quick)
    print(f"[perf] wrote {args.out}/perf.csv and {args.out}/README.md")
    return 1 if failures else 0
