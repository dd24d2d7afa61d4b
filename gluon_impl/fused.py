"""The fused margin cross-entropy operator (``gluon_impl/csrc/fused_margin_ce.cc``).

Built with the system C++ compiler on first use into a cache folder keyed by a hash of the
source, the build flags, the MXNet version and the CPU, then loaded with
``mx.library.load``; it registers ``F.fused_margin_lse`` (NDArray and Symbol, so hybridized
blocks use it too). Opt-in for now: ``FACELOSSES_FUSED=1`` turns it on. It brings the Gluon
margin heads from ~1.35-1.44x to ~1.08-1.23x of Dense+SoftmaxCE at C=10k/100k (B=256, D=512,
one thread), short of the 1.15x goal at 10k because its OpenBLAS sgemm is slower than the
oneDNN kernels behind FullyConnected; it stays off by default until it meets the goal, so
every committed result uses one Gluon path. ``available()`` is False, with a warning that
says why, when it is off, there is no compiler, or the build or the load fails; callers then
use the pure-Gluon graph. Cache: ``$FACELOSSES_CACHE``, else ``$XDG_CACHE_HOME/facelosses``, else
``~/.cache/facelosses``; the compiler: ``$CXX``, else ``g++``.
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
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "csrc" / "fused_margin_ce.cc"
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fPIC", "-shared", "-std=c++17")
_LOCK = threading.Lock()
_STATE: dict = {"done": False, "ok": False, "reason": ""}


def _cache_dir() -> Path:
    if os.environ.get("FACELOSSES_CACHE"):
        return Path(os.environ["FACELOSSES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "facelosses"


def _cpu_signature() -> str:
    """-march=native code runs only where it was built: key the cache by the CPU's flags."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(compiler: str, mx_dir: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [compiler, *FLAGS, str(SOURCE), "-o", tmp, f"-L{mx_dir}", "-l:libopenblas.so.0",
           f"-Wl,-rpath,{mx_dir}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()[-2000:]}")
        os.replace(tmp, out)  # atomic: concurrent builders each write their own temp file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load() -> None:
    import mxnet as mx

    if os.environ.get("FACELOSSES_FUSED", "0") != "1":
        raise RuntimeError("off unless FACELOSSES_FUSED=1")
    if hasattr(mx.nd, "fused_margin_lse"):  # loaded already: MXNet refuses a second registration
        return
    mx_dir = Path(mx.__file__).resolve().parent
    if not (mx_dir / "libopenblas.so.0").exists():
        raise RuntimeError(f"no libopenblas.so.0 beside libmxnet.so in {mx_dir}")
    compiler = os.environ.get("CXX") or "g++"
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r} not found; set CXX)")
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), mx.__version__.encode(),
                 str(mx_dir).encode(), _cpu_signature().encode()):
        key.update(part)
    lib = _cache_dir() / f"fused_margin_ce-{key.hexdigest()[:16]}.so"
    if not lib.exists():
        _build(compiler, mx_dir, lib)
        for stale in lib.parent.glob("fused_margin_ce-*.so"):  # builds of older sources
            if stale != lib:
                stale.unlink(missing_ok=True)
    mx.library.load(str(lib), verbose=False)
    if not hasattr(mx.nd, "fused_margin_lse") or not hasattr(mx.sym, "fused_margin_lse"):
        raise RuntimeError(f"{lib} loaded but registered no fused_margin_lse")


def available() -> bool:
    """True once the operator is registered (built and loaded on the first call)."""
    if not _STATE["done"]:
        with _LOCK:
            if not _STATE["done"]:
                try:
                    _load()
                    _STATE["ok"] = True
                except Exception as exc:  # noqa: BLE001  any failure -> pure-Gluon fallback
                    _STATE["reason"] = str(exc)
                    if os.environ.get("FACELOSSES_FUSED", "0") == "1":  # asked for, not had
                        warnings.warn("fused margin cross-entropy unavailable, using the "
                                      f"pure-Gluon head: {exc}", RuntimeWarning,
                                      stacklevel=2)
                _STATE["done"] = True
    return _STATE["ok"]


def unavailable_reason() -> str:
    """Why ``available()`` is False ('' when it is True or was not asked yet)."""
    return _STATE["reason"]
