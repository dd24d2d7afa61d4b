"""Repeat-and-median timing shared by the perf sections (the machine is shared and noisy)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_runs(fn: Callable[[], object], repeats: int, warmup: int = 0) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times: the seconds of each timed run
    (``time.perf_counter``), in order."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_call(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> dict:
    """``time_runs`` summarised: repeats and median/min/max seconds."""
    times = time_runs(fn, repeats, warmup)
    return {"repeats": repeats, "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times)}


def add_ratios(rows: list[dict]) -> list[dict]:
    """Set ``ratio`` = median / median of the same case's row whose impl is ``baseline``."""
    index = {(r["section"], r["case"], r["impl"]): r for r in rows}
    for r in rows:
        base = index.get((r["section"], r["case"], r.get("baseline")))
        ok = base and base.get("median_s") and r.get("median_s") is not None
        r["ratio"] = r["median_s"] / base["median_s"] if ok else None
    return rows
