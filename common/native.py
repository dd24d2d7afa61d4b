"""Build a small C++ source into a shared library, cached; framework-free.

Both backends keep a few row passes in C++ (``gluon_impl/csrc``, ``pytorch_impl/csrc``): this
module compiles one with the system compiler on first use and returns the cached ``.so``. The
cache key is a hash of the source, the flags, the caller's extra parts (e.g. the MXNet
version) and the CPU's flags (``-march=native`` code runs only where it was built). Cache:
``$FACELOSSES_CACHE``, else ``$XDG_CACHE_HOME/facelosses``, else ``~/.cache/facelosses``; the
compiler: ``$CXX``, else ``g++``. Every failure raises RuntimeError with the reason, so callers
can fall back to their pure-framework path and say why; ``LoadOnce`` holds the load-once,
fall-back-with-a-reason logic both backends share. ``FACELOSSES_FUSED=0`` turns both off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# no -ffast-math: NaN and inf keep their meaning; -fopenmp-simd only honours the sources'
# `omp simd` reductions (no OpenMP runtime, which could clash with the framework's)
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
         "-fPIC", "-shared", "-std=c++17")


def cache_dir() -> Path:
    if os.environ.get("FACELOSSES_CACHE"):
        return Path(os.environ["FACELOSSES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "facelosses"


def cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compile(compiler: str, source: Path, out: Path, flags) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [compiler, *flags, str(source), "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()[-2000:]}")
        os.replace(tmp, out)  # atomic: concurrent builders each write their own temp file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build(source: Path, extra_key: tuple[bytes, ...] = (), flags=FLAGS) -> Path:
    """The cached library built from ``source`` (compiled now if absent)."""
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r} not found; set CXX)")
    key = hashlib.sha256()
    for part in (source.read_bytes(), " ".join(flags).encode(), *extra_key,
                 cpu_signature().encode()):
        key.update(part)
    lib = cache_dir() / f"{source.stem}-{key.hexdigest()[:16]}.so"
    if not lib.exists():  # builds of other sources stay: checkouts may share the cache
        _compile(compiler, source, lib, flags)
    return lib


class LoadOnce:
    """Runs ``load`` on the first ``get()`` (once, under a lock) and keeps what it returned.

    Any exception means "use the framework's own operations": ``get()`` then returns None and
    ``reason`` says why, and a RuntimeWarning says it once, unless the user turned the kernels
    off (``FACELOSSES_FUSED=0``) or ``quiet(reason)`` holds (a default-off case, not a fault).
    """

    def __init__(self, load: Callable[[], Any], what: str, fallback: str,
                 quiet: Callable[[str], bool] = lambda reason: False):
        self._load, self._what, self._fallback, self._quiet = load, what, fallback, quiet
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the outcome: the next ``get()`` loads again (tests switch settings so)."""
        self.done, self.value, self.reason = False, None, ""

    def get(self) -> Any:
        if not self.done:
            with self._lock:
                if not self.done:
                    try:
                        if os.environ.get("FACELOSSES_FUSED", "") == "0":
                            raise RuntimeError("off: FACELOSSES_FUSED=0")
                        self.value = self._load()
                    except Exception as exc:  # noqa: BLE001  any failure -> the fallback
                        self.value, self.reason = None, str(exc)
                        if os.environ.get("FACELOSSES_FUSED", "") != "0" and \
                                not self._quiet(self.reason):
                            warnings.warn(f"{self._what} unavailable, using {self._fallback}: "
                                          f"{exc}", RuntimeWarning, stacklevel=3)
                    self.done = True
        return self.value
