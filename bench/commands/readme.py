"""Refresh a results block of README.md from the tables the bench wrote.

The block between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` is replaced; nothing
else in the README changes. From a results.csv of `python -m bench run` (``--results``): a
compact table, one row per loss (each backend's accuracy mean +- std, their difference and
training throughput), and the command, commit and CPU that produced it. With ``--real DIR...``
(folders `python -m bench real` wrote): one row per data set (``bench.real.summary``), into
the ``real`` block.
"""

from __future__ import annotations

import re
from pathlib import Path

NAME = "readme"
HELP = "refresh README.md's results table from results/<dataset>/results.csv"
NEEDS_FRAMEWORKS = False


def add_arguments(parser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results/synthetic/results.csv"),
                        help="results.csv written by `python -m bench run`")
    parser.add_argument("--readme", type=Path, default=Path("README.md"),
                        help="the file whose marked block is replaced")
    parser.add_argument("--real", type=Path, nargs="+", metavar="DIR", default=None,
                        help="instead of --results: results/<set>/ folders of `python -m bench "
                             "real`, summarised one row per set")
    parser.add_argument("--name", default=None,
                        help="marker name: <!-- results:NAME --> ... <!-- /results:NAME --> "
                             "(default: synthetic, or real with --real)")


def compact_table(csv_path: Path) -> str:
    import pandas as pd

    from bench.report import results as res
    from bench.report.tables import markdown_lines, read_metadata

    table = pd.read_csv(csv_path, comment="#")
    meta = read_metadata(csv_path)
    lines = []
    for target, group in table.groupby("target", sort=True):
        lines += [f"Verification set `{target}` (10-fold accuracy, mean +- std over folds):", ""]
        cells = []
        for loss, rows in group.groupby("loss", sort=True):
            by = {r.backend: r for r in rows.itertuples()}

            def acc(b, by=by):
                r = by.get(b)
                if r is None:
                    return "-"
                return f"{r.acc_mean:.4f} +- {r.acc_std:.4f}" if r.status == "ok" else r.status

            both = all(b in by and by[b].status == "ok" for b in ("pytorch", "gluon"))
            diff = f"{by['pytorch'].acc_mean - by['gluon'].acc_mean:+.4f}" if both else "-"
            ips = {b: f"{by[b].img_per_s:.0f}" if b in by and by[b].status == "ok" else "-"
                   for b in ("pytorch", "gluon")}
            cells.append([loss, acc("pytorch"), acc("gluon"), diff, ips["pytorch"], ips["gluon"]])
        lines += markdown_lines(["loss", "PyTorch acc", "Gluon acc", "torch - gluon",
                                 "PyTorch img/s", "Gluon img/s"], cells, align="---rrr")
        lines.append("")
    env = meta.get("environment") or {}
    # a table rebuilt after a partial rerun mixes cells of several runs: name every commit
    cells = [c for c in map(res.read_cell, sorted((csv_path.parent / "cells").glob("*.json")))
             if c is not None]
    commits = sorted({str(c["git_commit"])[:12] for c in cells if c.get("git_commit")})
    if not commits:  # cells from before the per-cell field: the table's own commit
        commits = [str(env.get("git_commit", "?"))[:12]]
    unrecorded = sum(not c.get("git_commit") for c in cells)
    made_by = (f"cells trained at commit{'s' if len(commits) > 1 else ''} "
               f"{', '.join(f'`{c}`' for c in commits)}"
               + (f" ({unrecorded} older cells without a per-cell commit)"
                  if unrecorded and len(cells) > unrecorded else "")
               + f" on {env.get('cpu', '?')}; the last command was "
               f"`{meta.get('command', '?')}`")
    lines.append(f"From [`{csv_path.as_posix()}`]({csv_path.as_posix()}) ({made_by}).")
    return "\n".join(lines)


def _real_block(folders) -> str:
    from bench.real import summary as real_summary

    names = " ".join(Path(f).as_posix() for f in folders)
    return (f"{real_summary.table(folders)}\n\nRefreshed by `python -m bench readme --real "
            f"{names}` from each folder's gap.csv and ranking.csv; every cell's commit, "
            f"config and command are in its results.md.")


def run(args) -> int:
    name = args.name or ("real" if args.real else "synthetic")
    if args.real:
        body = _real_block(args.real)
        source = ", ".join(str(f) for f in args.real)
    else:
        if not args.results.is_file():
            raise FileNotFoundError(f"{args.results}: no results table; run "
                                    f"`python -m bench run`")
        body, source = compact_table(args.results), str(args.results)
    text = args.readme.read_text()
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{args.readme}: markers {start} ... {end} not found")
    block = f"{start}\n{body}\n{end}"
    args.readme.write_text(pattern.sub(lambda _: block, text, count=1))
    print(f"updated {args.readme} from {source}")
    return 0
