"""The fused head's B x C and row passes in C++ (``pytorch_impl/csrc/head_passes.cc``).

In eager PyTorch the head's softmax side costs a pass (and often a temporary) per operation:
scale rows, scale columns, CurricularFace's mask and multiplier, write the target, max,
subtract, exp, sum forward; derivative, column and row scales, target backward; and a
temporary C x D product for each normalisation's backward. The kernels do each group in one
sweep, in place. Built with the system C++ compiler on first use (``common.native``, cached),
loaded with ctypes: no torch headers, about a second to build. They serve contiguous CPU
float32/float64 tensors; elsewhere (CUDA, no compiler, ``FACELOSSES_FUSED=0``) ``usable`` is
False and ``ops`` runs the same formulas as torch operations (tests/losses/test_torch_head_passes.py
checks both give the same numbers). The kernels run on one thread.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from common import native

SOURCE = Path(__file__).resolve().parent / "csrc" / "head_passes.cc"
_SUFFIX = {torch.float32: ("f32", ctypes.c_float), torch.float64: ("f64", ctypes.c_double)}
_P, _N = ctypes.c_void_p, ctypes.c_int64
# function -> argument types, with None standing for the dtype's scalar
_SIGNATURES = {
    "softmax_rows": (_P,) * 7 + (_N, _N),
    "softmax_rule_rows": (_P,) * 7 + (None, None, _P, _P, _N, _N),
    "grad_rows": (_P,) * 6 + (_N, _N),
    "project_rows": (_P,) * 4 + (_N, _N),
}


def _load():
    lib = ctypes.CDLL(str(native.build(SOURCE)))
    for suffix, scalar in _SUFFIX.values():
        for name, args in _SIGNATURES.items():
            fn = getattr(lib, f"{name}_{suffix}")
            fn.restype = None
            fn.argtypes = [scalar if a is None else a for a in args]
    return lib


LIB = native.LoadOnce(_load, "fused head kernels", "torch operations")


def available() -> bool:
    """True once the kernels are built and loaded (on the first call)."""
    return LIB.get() is not None


def unavailable_reason() -> str:
    """Why ``available()`` is False ('' when it is True or was not asked yet)."""
    return LIB.reason


def usable(t: torch.Tensor) -> bool:
    """Whether the kernels serve ``t`` (and the tensors of its dtype beside it)."""
    return t.device.type == "cpu" and t.dtype in _SUFFIX and available()


def _ptr(t):
    return None if t is None else t.data_ptr()


def _call(name: str, like: torch.Tensor, *args):
    suffix, scalar = _SUFFIX[like.dtype]
    getattr(LIB.value, f"{name}_{suffix}")(
        *(scalar(a) if isinstance(a, float) else a for a in args))


def softmax_rows(logits, row_scale, col_scale, labels, target, rule=None):
    """In place over the B x C GEMM output: scale rows and columns, apply CurricularFace's
    ``rule`` = (threshold (B,), s, t) if given, write ``target`` (B,) into the label column,
    then e = exp(z - max) per row. Returns (row sums, row maxima, dz'/dz or None)."""
    rows, cols = logits.shape
    sums = logits.new_empty(rows)
    maxima = logits.new_empty(rows)
    common = (_ptr(row_scale), _ptr(col_scale), labels.data_ptr(), _ptr(target))
    if rule is None:
        _call("softmax_rows", logits, logits.data_ptr(), *common, sums.data_ptr(),
              maxima.data_ptr(), rows, cols)
        return sums, maxima, None
    threshold, s, t = rule
    deriv = torch.empty_like(logits)
    _call("softmax_rule_rows", logits, logits.data_ptr(), deriv.data_ptr(), *common,
          threshold.data_ptr(), float(s), float(t), sums.data_ptr(), maxima.data_ptr(),
          rows, cols)
    return sums, maxima, deriv


def grad_rows(grad, deriv, col_scale, row_scale, labels, target_grad) -> None:
    """In place: G_ij = ((e_ij deriv_ij) c_j) a_i, G_iy = target_grad_i."""
    rows, cols = grad.shape
    _call("grad_rows", grad, grad.data_ptr(), _ptr(deriv), _ptr(col_scale),
          row_scale.data_ptr(), labels.data_ptr(), target_grad.data_ptr(), rows, cols)


def project_rows(grad, v, k, offset=None) -> None:
    """In place: g_i -= v_i (<g_i, v_i> k_i - o_i) (the backward of a row normalisation; o, if
    given, adds a gradient that reaches |v_i| directly, divided by |v_i|)."""
    rows, cols = grad.shape
    _call("project_rows", grad, grad.data_ptr(), v.data_ptr(), k.data_ptr(), _ptr(offset), rows,
          cols)
