"""Performance report: every figure a ratio against a baseline measured in the same run.

Runs the sections in bench/perf/ (loss heads, data reader, verification, training throughput,
scaling), and writes results/perf/perf.csv (raw rows: median, min and max seconds of the repeats,
ratio to the baseline), results/perf/README.md (one table per section, goals marked) and a plot
per section. The machine is shared and noisy: each case is repeated and the median reported,
with the min-max spread beside it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import time
from pathlib import Path

NAME = "perf"
HELP = "time heads, reader, verification and training against baselines; write results/perf/"


def add_arguments(parser) -> None:
    names = _all_sections()
    parser.add_argument(
        "--sections", nargs="+", default=names, choices=names, metavar="SECTION",
        help=f"which sections to measure (choices: {', '.join(names)}); the others keep "
             "their rows from OUT/perf.csv",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="fewer repeats and smaller shapes (a check that the report runs, not figures to cite)",
    )
    parser.add_argument("--cases", nargs="+", default=None, metavar="SUBSTRING",
                        help="only the cases whose name contains one of these (sections that "
                             "take it: training), e.g. 'iresnet50 b128'; the section's other "
                             "rows are kept from OUT/perf.csv")
    parser.add_argument("--out", type=Path, default=Path("results/perf"),
                        help="folder for perf.csv, README.md and the plots")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rebuild README.md and the plots from OUT/perf.csv")


def run(args) -> int:
    from bench.perf.report import read_rows, write_report

    if args.render_only:
        rows = read_rows(args.out / "perf.csv")
        sections = [s for s in args.sections if any(r["section"] == s for r in rows)]
        write_report(rows, args.out, sections=sections, failures={}, quick=False)
        print(f"[perf] rebuilt {args.out}/README.md from {args.out}/perf.csv")
        return 0
    from bench.report.results import environment

    names = [n for n in _all_sections() if n in args.sections]
    if args.cases:
        import inspect

        no_cases = [n for n in names if "cases" not in inspect.signature(
            importlib.import_module(f"bench.perf.sections.{n}").measure).parameters]
        if no_cases:
            raise ValueError(f"--cases: section(s) {', '.join(no_cases)} measure all their "
                             "cases; --cases applies to: training")
    # sections not asked for keep their rows from an earlier full run (each row carries the
    # commit and date it was measured at), so one section can be re-measured on its own
    previous = read_rows(args.out / "perf.csv") if (args.out / "perf.csv").is_file() else []
    kept = [r for r in previous if r["section"] not in names
            or (args.cases and not any(c in r["case"] for c in args.cases))]
    commit = environment()["git_commit"][:10]
    rows, failures = [], {}
    for name in names:
        module = importlib.import_module(f"bench.perf.sections.{name}")
        print(f"[perf] section {name} ...", flush=True)
        t0 = time.perf_counter()
        # the conditions too: thread count and load decide what a shared 2-core machine gives
        stamp = {"measured": f"{commit} {time.strftime('%Y-%m-%d')}, OMP_NUM_THREADS="
                             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average "
                             f"{os.getloadavg()[0]:.1f} at the start"}
        try:
            kwargs = {"cases": args.cases} if args.cases else {}
            section_rows = [{**r, **stamp} for r in module.measure(quick=args.quick, **kwargs)]
        except Exception as exc:  # a broken section must not lose the others' figures
            failures[name] = f"{type(exc).__name__}: {exc}"
            print(f"[perf] section {name} failed: {failures[name]}", flush=True)
            # nothing new measured: the section keeps its earlier rows
            kept += [r for r in previous if r["section"] == name and r not in kept]
            continue
        rows += section_rows
        print(f"[perf] section {name}: {len(section_rows)} rows in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        # after every section, so a crash (or the OOM killer) later keeps what was measured
        _write(kept, rows, args, failures)
    _write(kept, rows, args, failures)
    print(f"[perf] wrote {args.out}/perf.csv and {args.out}/README.md")
    return 1 if failures else 0


def _all_sections() -> list[str]:
    import bench.perf.sections

    return sorted(m.name for m in pkgutil.iter_modules(bench.perf.sections.__path__)
                  if not m.name.startswith("_"))


def _write(kept: list[dict], rows: list[dict], args, failures: dict) -> None:
    from bench.perf.report import write_report

    done = {r["section"] for r in kept + rows} | set(failures)
    order = [n for n in _all_sections() if n in done]
    merged = [r for n in order for r in kept + rows if r["section"] == n]
    write_report(merged, args.out, sections=order, failures=failures, quick=args.quick)
