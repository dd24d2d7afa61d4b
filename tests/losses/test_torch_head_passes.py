"""The fused PyTorch head's C++ passes (``pytorch_impl.native``) against its torch-operations
path (CUDA, no compiler, ``FACELOSSES_FUSED=0``), for every registered loss that runs through
the head: same value and gradients, float64 to 1e-12 and float32 to 1e-5, at sizes that
exercise the vector loops' remainders; the fallback taken for non-contiguous weights; and
errno left alone (MXNet, in the same process, reads it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loss_backends import random_state, torch_eval, torch_loss

from pytorch_impl import losses as TL
from pytorch_impl import native, ops

NAMES = TL.list_losses()
TOL = {"float32": 1e-5, "float64": 1e-12}


def _problem(name, dtype, seed, batch=37, classes=53, dim=19):
    rng = np.random.default_rng(seed)
    state = random_state(name, classes, dim, rng, dtype)
    x = rng.normal(size=(batch, dim)) * rng.uniform(0.5, 30.0)
    y = rng.integers(0, classes, size=batch)
    return torch_loss(name, classes, dim, state, {}, dtype), x, y


def _close(got, want, dtype, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.abs(want).max(initial=0.0), 1.0)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


def test_the_kernels_are_built_here():
    assert native.available(), native.unavailable_reason()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_kernels_equal_torch_operations(name, dtype, monkeypatch):
    kernel_calls, torch_calls = [], []
    kernel, torch_path = native.softmax_rows, ops._softmax_rows_torch
    monkeypatch.setattr(native, "softmax_rows", lambda *a: kernel_calls.append(1) or kernel(*a))
    monkeypatch.setattr(ops, "_softmax_rows_torch",
                        lambda *a: torch_calls.append(1) or torch_path(*a))
    for seed in range(3):
        fast_value, fast_grads = torch_eval(*_problem(name, dtype, seed), dtype)
        with monkeypatch.context() as m:
            m.setattr(native, "usable", lambda t: False)
            slow_value, slow_grads = torch_eval(*_problem(name, dtype, seed), dtype)
        _close(fast_value, slow_value, dtype, f"{name} value")
        assert fast_grads.keys() == slow_grads.keys()
        for key in fast_grads:
            _close(fast_grads[key], slow_grads[key], dtype, f"{name} grad {key}")
    # wherever the head runs, the CPU kernel ran instead of the torch operations
    assert len(kernel_calls) == len(torch_calls), name
    base = name.split("+")[0]
    if base in ("softmax", "normface", "sphereface", "arcface", "magface", "curricularface"):
        assert kernel_calls, f"{name}: the fused head did not run"


def test_non_contiguous_weight_takes_the_torch_path(monkeypatch):
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(6, 4)), requires_grad=True)
    w_t = torch.tensor(rng.normal(size=(4, 9)), requires_grad=True)
    y = torch.tensor(rng.integers(0, 9, size=6))
    monkeypatch.setattr(native, "softmax_rows", lambda *a: pytest.fail("kernel on a view"))
    r = torch.full((6,), 30.0, dtype=x.dtype)
    value = ops.margin_cross_entropy(x, w_t.t(), y, r, True, None, embed_scale=30.0)
    value.backward()
    w = w_t.detach().t().contiguous().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    monkeypatch.undo()
    want = ops.margin_cross_entropy(x2, w, y, r, True, None, embed_scale=30.0)
    want.backward()
    np.testing.assert_allclose(value.item(), want.item(), rtol=1e-12)
    np.testing.assert_allclose(w_t.grad.t().numpy(), w.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_the_kernels_leave_errno_alone():
    """A softmax row at s=64 underflows exp, and glibc's exp then sets errno = ERANGE; MXNet's
    scalar parser reads a stale ERANGE as an overflow of "inf" (``nd.contrib.isfinite`` raised
    "Out of range value for scalar" in the Gluon trainer after a PyTorch step in the same
    process). The kernels must restore errno."""
    from mxnet import nd

    assert native.available(), native.unavailable_reason()
    probe = nd.array([1.0, float("inf")])
    for dtype in (torch.float32, torch.float64):
        # every width from one vector's remainder up: exp(-1000) underflows in every lane
        for cols in range(1, 40):
            logits = torch.full((3, cols), -1000.0, dtype=dtype)
            logits[:, 0] = 0.0
            labels = torch.zeros(3, dtype=torch.int64)
            native.softmax_rows(logits, None, None, labels, None)
            assert nd.contrib.isfinite(probe).asnumpy().tolist() == [1.0, 0.0], (dtype, cols)
