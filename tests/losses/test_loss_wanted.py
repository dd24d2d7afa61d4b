"""What the generated loss tests do not reach for the "wanted" losses of SPEC.md section 1:
CurricularFace's running t (``step()``) against the oracle's update in both backends
(Gluon hybridized), and Sub-center ArcFace's class-major K C x D weight layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loss_backends import (
    gluon_eval,
    gluon_loss,
    random_state,
    target_angle_inputs,
    torch_eval,
    torch_loss,
)
from mxnet import nd
from oracles import curricular_t_update, loss_value

from gluon_impl import losses as GL
from pytorch_impl import losses as TL


def test_curricularface_t_follows_the_momentum_rule_and_enters_the_loss():
    rng = np.random.default_rng(8)
    state = random_state("curricularface", 5, 4, rng)
    state["t"] = np.zeros(1)  # the paper's t(0) = 0
    tl = torch_loss("curricularface", 5, 4, state, {}, "float64")
    gl = gluon_loss("curricularface", 5, 4, state, {}, "float64", hybridize=True)
    t = 0.0
    for _ in range(3):
        x, y = rng.normal(size=(6, 4)), rng.integers(0, 5, size=6)
        value, _ = gluon_eval(gl, x, y, "float64")  # the forward does not move t
        expect = loss_value("curricularface", x, y, {**state, "t": np.array([t])})
        np.testing.assert_allclose(value, expect, rtol=1e-10)
        t = curricular_t_update(t, x, y, state["weight"], 0.01)
        tl.step(torch.tensor(x), torch.tensor(y))
        gl.step(nd.array(x, dtype="float64"), nd.array(y, dtype="float64"))
        np.testing.assert_allclose(TL.loss_state(tl)["t"], [t], rtol=1e-12)
        np.testing.assert_allclose(GL.loss_state(gl)["t"], [t], rtol=1e-12)
    assert t != 0.0
    # t changes the hard negatives' logits, hence the loss: theta_y = 2 makes every negative
    # with cos_j > cos(2.5) hard
    y = np.array([0, 1, 2])
    x = target_angle_inputs(2.0, state["weight"], y, rng)
    values = [torch_eval(torch_loss("curricularface", 5, 4, {**state, "t": np.array([v])},
                                    {}, "float64"), x, y, "float64")[0] for v in (0.0, 0.8)]
    assert abs(values[0] - values[1]) > 1e-3 * abs(values[0])


def test_subcenter_weight_is_class_major_and_the_max_picks_the_closest():
    """Moving one sub-centre of class j onto x makes cos_j = 1 (the loss sees rows j K .. j K
    + K - 1 as class j), and argmax over the K C rows // K is the class."""
    k, c, d = 3, 4, 6
    rng = np.random.default_rng(3)
    state = random_state("subcenter_arcface", c, d, rng)
    assert state["weight"].shape == (k * c, d)
    x = rng.normal(size=(2, d))
    y = np.array([2, 1])
    state["weight"][2 * k + 1] = 5.0 * x[0]  # class 2, sub-centre 1
    state["weight"][1 * k + 2] = 0.5 * x[1]  # class 1, sub-centre 2
    for loss in (torch_loss("subcenter_arcface", c, d, state, {}, "float64"),
                 gluon_loss("subcenter_arcface", c, d, state, {}, "float64")):
        run = torch_eval if isinstance(loss, torch.nn.Module) else gluon_eval
        value, grads = run(loss, x, y, "float64")
        np.testing.assert_allclose(value, loss_value("subcenter_arcface", x, y, state),
                                   rtol=1e-10, atol=1e-14)
        # only the arg-max sub-centre of the target class gets the target's gradient
        assert np.abs(grads["weight"][2 * k + 1]).max() > 0
    unit = state["weight"] / np.linalg.norm(state["weight"], axis=1, keepdims=True)
    pred = (x / np.linalg.norm(x, axis=1, keepdims=True) @ unit.T).argmax(axis=1) // k
    assert pred.tolist() == y.tolist()


def curricular_unfused(loss, x, labels):
    """CurricularFace as plain autograd ops (B x C passes): the formula the fused head replaced."""
    import math

    from pytorch_impl import ops
    from pytorch_impl.losses.arcface import SIN_EPS, arc_margin

    s, m = loss.scale, loss.margin
    logits = (x * (s / ops.row_norm(x))[:, None]) @ ops.l2_normalize(loss.weight).t()
    cos_y = ops.clamp_st(ops.gather_target(logits, labels) / s, -1.0, 1.0)
    target = s * arc_margin(cos_y, m, easy_margin=False)
    c = cos_y.detach()  # the hard-negative test has no gradient
    sin = torch.sqrt(torch.clamp_min(1.0 - c * c, SIN_EPS))
    hard = logits > (s * (c * math.cos(m) - sin * math.sin(m)))[:, None]
    logits = torch.where(hard, logits * (loss.t + logits / s), logits)
    logits = logits.scatter(1, labels[:, None], target[:, None])
    return (torch.logsumexp(logits, dim=1) - target).mean()


def _curricular_problems(dtype):
    gen = torch.Generator().manual_seed(3)
    for trial in range(12):
        c, b = (2, 7, 40)[trial % 3], (1, 5, 16)[trial % 3]
        loss = TL.build_loss("curricularface", num_classes=c, embedding_size=6,
                             margin=(0.2, 0.5, 1.2)[trial % 3]).to(dtype)
        loss.t.fill_((0.0, 0.4, 0.95, -0.3)[trial % 4])
        with torch.no_grad():
            loss.weight.copy_(torch.randn(c, 6, generator=gen, dtype=dtype))
        x = torch.randn(b, 6, generator=gen, dtype=dtype, requires_grad=True)
        yield loss, x, torch.randint(0, c, (b,), generator=gen)


def _value_and_grads(fn, loss, x, y):
    value = fn(loss, x, y)
    return (value.item(), *torch.autograd.grad(value, (x, loss.weight)))


def _assert_grads_close(got, want, tol):
    # a saturated softmax (p_y ~ 1 at s=64) leaves gradients that are differences of
    # near-equal terms: compare them on the scale of the largest entry
    for g, w in zip(got, want):
        scale = float(w.abs().max())
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("path", ["kernel", "torch ops"])
def test_curricularface_fused_head_equals_the_unfused_formula(path, monkeypatch):
    """The fused torch head takes the hard-negative rule inside (``ops.margin_cross_entropy``
    ``hard=``), by the C++ row pass of ``pytorch_impl.native`` on CPU or by torch operations
    where it does not apply; either must equal the plain autograd formula it replaced
    (float64)."""
    from pytorch_impl import native

    if path == "kernel":
        assert native.available(), native.unavailable_reason()
    else:
        monkeypatch.setattr(native, "usable", lambda t: False)
    for loss, x, y in _curricular_problems(torch.float64):
        got = _value_and_grads(lambda lo, a, b: lo(a, b), loss, x, y)
        want = _value_and_grads(curricular_unfused, loss, x, y)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
        _assert_grads_close(got[1:], want[1:], 1e-10)


def test_curricularface_kernel_equals_the_torch_ops_in_float32(monkeypatch):
    """float32: the C++ pass and the torch operations agree to 1e-5 (they differ only by z / s
    against z * (1/s)); each against the float64-exact unfused formula float32 cancellation
    alone moves the saturated gradients by ~1e-4 of their scale."""
    from pytorch_impl import native

    assert native.available(), native.unavailable_reason()
    kernel = native.usable
    for loss, x, y in _curricular_problems(torch.float32):
        got = _value_and_grads(lambda lo, a, b: lo(a, b), loss, x, y)
        monkeypatch.setattr(native, "usable", lambda t: False)
        want = _value_and_grads(lambda lo, a, b: lo(a, b), loss, x, y)
        monkeypatch.setattr(native, "usable", kernel)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
        _assert_grads_close(got[1:], want[1:], 1e-5)
