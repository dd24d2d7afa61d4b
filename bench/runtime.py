"""Process-wide settings that must happen before the frameworks are imported.

Importing mxnet drops torch to one thread, and mxnet itself runs on one thread
unless OMP_NUM_THREADS is set when it loads; so the CLI and the tests call
``configure_threads`` first, and the backends are imported only after it.
"""

from __future__ import annotations

import os


def configure_threads(num_threads: int | None = None) -> int:
    """Set OMP_NUM_THREADS (default: all cores, at most the env value) and re-apply it to torch."""
    if num_threads is None:
        num_threads = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    os.environ["OMP_NUM_THREADS"] = str(num_threads)
    # MXNET_ENGINE_TYPE is left unset: its default is the same engine, and setting it makes
    # MXNet log "MXNet start using engine" at exit, after whatever the command printed last
    os.environ.setdefault("MPLBACKEND", "Agg")
    import mxnet  # noqa: F401  (must load after OMP_NUM_THREADS is set)
    import torch

    torch.set_num_threads(num_threads)
    return num_threads
