"""Test-wide setup: threads are configured before either framework loads."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from bench.runtime import configure_threads  # noqa: E402

configure_threads(int(os.environ["OMP_NUM_THREADS"]))
