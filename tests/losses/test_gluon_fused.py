"""The fused Gluon head (``gluon_impl/native.py``; on by default without a GPU, off with
``FACELOSSES_FUSED=0``): built with the system compiler, it must give the pure-Gluon graph's
values and gradients for every softmax-family loss (the ``MarginSoftmax`` hooks and
CurricularFace's hard-negative rule), imperative and hybridized, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
from loss_backends import gluon_eval, gluon_loss, labels_for, random_state

from gluon_impl import losses as GL
from gluon_impl import native
from gluon_impl.losses.base import loss_class

# every single softmax-family loss goes through ops.margin_cross_entropy (joint ones too, via
# their base, which is tested here on its own)
MARGIN_LOSSES = [n for n in GL.list_losses() if loss_class(n).shardable]


@pytest.fixture()
def fresh_state():
    """``native.available()`` asks again in the test; the module's state is restored after."""
    loader = native.OPERATORS
    saved = (loader.done, loader.value, loader.reason)
    loader.reset()
    yield
    loader.done, loader.value, loader.reason = saved


@pytest.fixture()
def fused_switch(monkeypatch, fresh_state):
    """Builds and loads the operator; yields a function that turns the fused path on or off."""
    monkeypatch.setenv("FACELOSSES_FUSED", "1")
    assert native.available(), f"the fused operator did not build: {native.unavailable_reason()}"

    def switch(on: bool) -> None:
        native.OPERATORS.value = True if on else None

    return switch


def test_FACELOSSES_FUSED_0_turns_it_off(monkeypatch, fresh_state):
    monkeypatch.setenv("FACELOSSES_FUSED", "0")
    assert not native.available() and "FACELOSSES_FUSED=0" in native.unavailable_reason()


@pytest.mark.parametrize("name", MARGIN_LOSSES)
def test_fused_head_equals_the_graph(name, fused_switch):
    assert len(MARGIN_LOSSES) >= 6
    rng = np.random.default_rng(7)
    for trial, (dtype, hybridize) in enumerate([("float64", False), ("float64", True),
                                                ("float32", False), ("float32", True)]):
        c, b = (2, 9, 31, 5)[trial], (1, 6, 12, 8)[trial]
        state = random_state(name, c, 6, rng)
        x = rng.standard_normal((b, 6)) * 2.0
        y = labels_for("duplicates" if trial % 2 else "random", b, c, rng)
        out = {}
        for on in (True, False):
            fused_switch(on)
            loss = gluon_loss(name, c, 6, state, {}, dtype, hybridize=hybridize)
            out[on] = gluon_eval(loss, x, y, dtype)
        rtol = 1e-10 if dtype == "float64" else 1e-5
        # atol: a loss can round to ~1e-15 (a one-row batch whose target dominates)
        np.testing.assert_allclose(out[True][0], out[False][0], rtol=rtol, atol=rtol)
        for key, want in out[False][1].items():
            scale = float(np.abs(want).max()) or 1.0
            np.testing.assert_allclose(out[True][1][key], want, rtol=rtol, atol=rtol * scale,
                                       err_msg=f"{name} {dtype} hybridize={hybridize}: {key}")


@pytest.mark.parametrize("name", ["softmax", "arcface"])
def test_nan_in_a_weight_row_gives_a_nan_loss(name, fused_switch):
    """A NaN logit outside the target column reaches the loss, as in torch, instead of being
    dropped by the row max (the build has no -ffast-math). MXNet's log_softmax, in the graph
    path, does drop it and returns a finite loss: not asserted here."""
    rng = np.random.default_rng(3)
    state = random_state(name, 7, 6, rng)
    state["weight"][4] = np.nan
    x, y = rng.standard_normal((5, 6)), np.array([0, 1, 2, 3, 5])
    fused_switch(True)
    for hybridize in (False, True):
        loss = gluon_loss(name, 7, 6, state, {}, "float32", hybridize=hybridize)
        value, grads = gluon_eval(loss, x, y, "float32")
        assert np.isnan(value) and np.isnan(grads["x"]).all(), (name, hybridize)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_row_norm_operator_equals_the_graph(dtype, fused_switch):
    """``ops.row_norm`` by ``norm_rows`` against sqrt(sum x^2 + 1e-24): values and the gradient
    of a weighted sum, a zero row included (finite gradient, 0), odd widths for the vector
    loops' remainders, imperative and inside a hybridized block."""
    import mxnet as mx
    from mxnet import autograd, gluon, nd

    from gluon_impl import ops

    class Norms(gluon.HybridBlock):
        def hybrid_forward(self, F, x, w):
            return F.sum(ops.row_norm(F, x) * w)

    rng = np.random.default_rng(3)
    for rows, cols in ((5, 1), (7, 19), (3, 64)):
        xv = rng.standard_normal((rows, cols)) * 3.0
        xv[1 % rows] = 0.0
        wv = rng.standard_normal(rows)
        out = {}
        for on, hybridize in ((True, False), (True, True), (False, False)):
            fused_switch(on)
            block = Norms()
            if hybridize:
                block.hybridize()
            x = nd.array(xv, dtype=dtype, ctx=mx.cpu())
            x.attach_grad()
            with autograd.record():
                value = block(x, nd.array(wv, dtype=dtype))
            value.backward()
            out[(on, hybridize)] = (value.asnumpy(), x.grad.asnumpy())
        rtol = 1e-12 if dtype == "float64" else 1e-6
        for key in ((True, False), (True, True)):
            np.testing.assert_allclose(out[key][0], out[(False, False)][0], rtol=rtol)
            np.testing.assert_allclose(out[key][1], out[(False, False)][1], rtol=rtol,
                                       atol=rtol * np.abs(out[(False, False)][1]).max())
            assert np.isfinite(out[key][1]).all() and not out[key][1][1 % rows].any()
