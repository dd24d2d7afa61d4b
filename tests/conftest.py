"""Test-wide setup: threads are configured before either framework loads, and the shared
helpers at the top of tests/ (oracles, loss_backends, datagen, verification_oracle) are
importable from the tests in tests/<package>/."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from bench.runtime import configure_threads  # noqa: E402

configure_threads(int(os.environ["OMP_NUM_THREADS"]))
