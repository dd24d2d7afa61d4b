"""CurricularFace's hard-negative rule in one C++ pass (``pytorch_impl/csrc/curricular_rule.cc``).

In eager PyTorch the rule costs about eight B x C passes (mask, multiplier, fill, product
forward; derivative and product backward); the kernel does it in one forward pass that also
writes the derivative, and the backward multiplies by it (one pass). Built with the system C++
compiler on first use (``common.native``, cached), loaded with ctypes: no torch headers, about
a second to build. Used for contiguous CPU float32/float64 logits; elsewhere (CUDA, no
compiler, ``FACELOSSES_FUSED=0``) ``curricular_rule`` returns None and ``ops`` runs the same
rule as torch operations (tests/test_loss_wanted.py checks both give the same numbers).
The kernel runs on one thread.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings
from pathlib import Path

import torch

from common import native

SOURCE = Path(__file__).resolve().parent / "csrc" / "curricular_rule.cc"
_LOCK = threading.Lock()
_STATE: dict = {"done": False, "lib": None, "reason": ""}
_FUNCS = {torch.float32: ("curricular_rule_f32", ctypes.c_float),
          torch.float64: ("curricular_rule_f64", ctypes.c_double)}


def _load():
    if os.environ.get("FACELOSSES_FUSED", "") == "0":
        raise RuntimeError("off: FACELOSSES_FUSED=0")
    lib = ctypes.CDLL(str(native.build(SOURCE)))
    for name, scalar in _FUNCS.values():
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                       ctypes.c_int64, scalar, scalar]
    return lib


def available() -> bool:
    """True once the kernel is built and loaded (on the first call)."""
    if not _STATE["done"]:
        with _LOCK:
            if not _STATE["done"]:
                try:
                    _STATE["lib"] = _load()
                except Exception as exc:  # noqa: BLE001  any failure -> the torch path
                    _STATE["reason"] = str(exc)
                    if os.environ.get("FACELOSSES_FUSED", "") != "0":
                        warnings.warn(f"CurricularFace kernel unavailable, using torch "
                                      f"operations: {exc}", RuntimeWarning, stacklevel=2)
                _STATE["done"] = True
    return _STATE["lib"] is not None


def curricular_rule(logits: torch.Tensor, threshold: torch.Tensor, s: float, t: float):
    """Apply the rule to ``logits`` (B x C) in place and return dz'/dz (B x C); None when the
    kernel does not apply (then nothing is changed)."""
    if logits.device.type != "cpu" or logits.dtype not in _FUNCS \
            or not logits.is_contiguous() or not available():
        return None
    threshold = threshold.to(logits.dtype).contiguous()
    deriv = torch.empty_like(logits)
    name, scalar = _FUNCS[logits.dtype]
    getattr(_STATE["lib"], name)(logits.data_ptr(), deriv.data_ptr(), threshold.data_ptr(),
                                 logits.shape[0], logits.shape[1], scalar(s), scalar(t))
    return deriv
