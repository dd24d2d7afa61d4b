"""Perf section ``verification``: vectorised LFW metrics against the literal InsightFace loop.

Both run in the same process on the same embeddings (6000 pairs, D=512, half same pairs, as
LFW), from raw embeddings to accuracy, VAL@FAR and ROC. The literal loop is the test oracle,
``tests/verification_oracle.py`` (loaded by path: ``tests`` is not an installed package).

Run alone and write the markdown record::

    OMP_NUM_THREADS=2 python -m bench.perf.sections.verification --out results/perf/verification.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.perf.timing import time_runs
from bench.report.tables import markdown_lines
from common.verification import evaluate_embeddings, fold_ids

ORACLE = Path(__file__).resolve().parents[3] / "tests" / "verification_oracle.py"


def _load_oracle():
    if not ORACLE.is_file():
        raise FileNotFoundError(f"literal verification loop not found: {ORACLE}")
    spec = importlib.util.spec_from_file_location("verification_oracle", ORACLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lfw_like_embeddings(nrof_pairs: int, dim: int, seed: int = 0):
    """Interleaved pair embeddings, same pairs nearer than different ones.

    Labels are laid out as in lfw.bin: each of the 10 folds holds its same pairs first, then
    its different pairs.
    """
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(2 * nrof_pairs, dim))
    folds = fold_ids(nrof_pairs, 10)
    start = np.searchsorted(folds, folds)  # index of each pair's fold start
    size = np.bincount(folds)[folds]
    issame = (np.arange(nrof_pairs) - start) < size // 2
    emb[1::2][issame] = emb[0::2][issame] + 1.2 * rng.normal(size=(int(issame.sum()), dim))
    return emb, issame


def measure(quick: bool = False, nrof_pairs: int = 6000, dim: int = 512) -> list[dict]:
    """Rows for ``python -m bench perf``; ``ratio`` = median time / the literal loop's median."""
    oracle = _load_oracle()
    emb, issame = lfw_like_embeddings(nrof_pairs, dim)
    ours = evaluate_embeddings(emb, issame)
    ref = oracle.evaluate(emb, issame)
    # a speed figure for code that disagrees with the reference would mean nothing
    if not (np.array_equal(ours.accuracies, ref["accuracies"])
            and np.array_equal(ours.vals, ref["vals"])):
        raise ValueError("verification perf: vectorised and literal results differ")
    repeats = {"literal": 1 if quick else 3, "vectorised": 5 if quick else 20}
    times = {
        "literal": time_runs(lambda: oracle.evaluate(emb, issame), repeats["literal"]),
        "vectorised": time_runs(lambda: evaluate_embeddings(emb, issame),
                                repeats["vectorised"]),
    }
    base = statistics.median(times["literal"])
    case = f"{nrof_pairs} pairs, D={dim}, 10 folds"
    rows = []
    for impl, ts in times.items():
        rows.append({
            "section": "verification", "case": case,
            "impl": "InsightFace literal loop" if impl == "literal" else "common.verification",
            "baseline": "InsightFace literal loop", "repeats": len(ts),
            "median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
            "ratio": statistics.median(ts) / base, "raw_s": [round(t, 6) for t in ts],
            "goal": "" if impl == "literal" else "ratio <= 0.05 (>= 20x faster)",
            "note": "identical fold accuracies and VAL, checked in this run",
        })
    return rows


def _environment() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"Python {platform.python_version()}, numpy {np.__version__}, "
            f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
            f"load average before the run {load}, {time.strftime('%Y-%m-%d %H:%M')}")


def to_markdown(rows: list[dict], command: str, environment: str = "") -> str:
    lines = [
        "# Verification metrics: vectorised vs literal InsightFace loop",
        "",
        f"Command: `{command}`",
        "",
        f"Environment: {environment}",
        "",
        "Both produce identical fold accuracies and VAL (checked in the same run before timing).",
        "",
    ]
    lines += markdown_lines(
        ["case", "impl", "repeats", "median s", "min s", "max s", "ratio", "raw s"],
        ([r["case"], r["impl"], r["repeats"], f"{r['median_s']:.4f}", f"{r['min_s']:.4f}",
          f"{r['max_s']:.4f}", f"{r['ratio']:.4f}", ", ".join(f"{t:.4f}" for t in r["raw_s"])]
         for r in rows))
    speedup = rows[0]["median_s"] / rows[1]["median_s"]
    lines += ["", f"Speed-up (literal median / vectorised median): {speedup:.1f}x", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--out", type=Path, help="write the markdown record here")
    args = parser.parse_args(argv)
    environment = _environment()
    rows = measure(quick=args.quick)
    command = "OMP_NUM_THREADS=2 python -m bench.perf.sections.verification " + " ".join(
        sys.argv[1:] if argv is None else argv)
    text = to_markdown(rows, command.strip(), environment)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
