"""Cross-framework parity: same embeddings, labels and state -> same value and gradients.

For every registered loss: random seeds, batch sizes and class counts (C=2 and one-class or
duplicate-label batches included), float32 to 1e-5 and float64 to 1e-10 relative; edge angles
of the target (theta ~ 0, cos = +-1, near and beyond pi - m); several optimiser steps for the
stateful ones; hybridized Gluon against imperative Gluon.
"""

from __future__ import annotations

import numpy as np
import pytest
from loss_backends import (
    EDGE_ANGLES,
    LEARNED,
    gluon_eval,
    gluon_loss,
    labels_for,
    random_state,
    target_angle_inputs,
    torch_eval,
    torch_loss,
)

from gluon_impl import losses as GL
from pytorch_impl import losses as TL

NAMES = TL.list_losses()
TOL = {"float32": 1e-5, "float64": 1e-10}
WITH_WEIGHT = [n for n in NAMES if "weight" in TL.loss_state(TL.build_loss(n, 2, 2))]


def assert_close(a, b, dtype, what, floor=1e-30):
    """Relative to the largest magnitude of b (norm-wise), or to ``floor`` if larger."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(initial=0.0), floor)
    np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * scale, err_msg=what)


def compare(name, x, y, state, dtype, hp=None, num_classes=None, grad_floor=1.0):
    hp = hp or {}
    num_classes = num_classes or len(state.get("weight", state.get("centers", [0, 0])))
    dim = x.shape[1]
    state = {k: v if k == "iteration" else v.astype(dtype) for k, v in state.items()}
    tv, tg = torch_eval(torch_loss(name, num_classes, dim, state, hp, dtype), x, y, dtype)
    gv, gg = gluon_eval(gluon_loss(name, num_classes, dim, state, hp, dtype), x, y, dtype)
    assert np.isfinite(tv) and all(np.isfinite(g).all() for g in tg.values()), name
    # a loss near 0 (target dominant) is a difference of O(1) numbers: absolute floor 1
    assert_close(gv, tv, dtype, f"{name} value", floor=1.0)
    assert tg.keys() == gg.keys()
    # when the softmax saturates (cos = 1) the gradient is 1 - p_y ~ e^-60 and what is left
    # is rounding of p_y: below ``grad_floor`` the comparison is absolute (tolerance x floor)
    for key in tg:
        assert_close(gg[key], tg[key], dtype, f"{name} grad {key}", floor=grad_floor)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_parity_random(name, dtype):
    for seed in range(6):
        rng = np.random.default_rng(seed)
        num_classes = [2, 3, 7, 16][seed % 4]
        dim = int(rng.integers(2, 9))
        batch = int(rng.integers(1, 10))
        kind = ["random", "one_class", "duplicates"][seed % 3]
        state = random_state(name, num_classes, dim, rng)
        x = (rng.normal(size=(batch, dim)) * rng.uniform(0.3, 5.0)).astype(dtype)
        y = labels_for(kind, batch, num_classes, rng)
        compare(name, x, y, state, dtype, num_classes=num_classes)


def _margin(name):
    hp = TL.base.loss_class(name).hyperparameters()
    return float(hp.get("margin", hp.get("m2", 0.5)))


@pytest.mark.parametrize("edge", sorted(EDGE_ANGLES))
@pytest.mark.parametrize("name", WITH_WEIGHT)
def test_parity_edge_angles(name, edge):
    rng = np.random.default_rng(11)
    num_classes, dim, batch = 4, 6, 5
    state = random_state(name, num_classes, dim, rng)
    y = labels_for("random", batch, num_classes, rng)
    theta = EDGE_ANGLES[edge](_margin(name) if "sphereface" not in name else 0.5)
    # one row per class, or sub-centre 0 of each class (K C rows, class-major)
    per_class = state["weight"][:: len(state["weight"]) // num_classes]
    x = target_angle_inputs(theta, per_class, y, rng)
    if edge == "cos_plus_1":
        x = 2.0 * per_class[y]  # exactly parallel: cos = 1 up to rounding
    for dtype in ("float32", "float64"):
        # float32 at saturation: Gluon's log_softmax backward rounds p_y - 1 at ~eps32 x the
        # logit scale (s |W| ~ 10-100 here), so the absolute floor is 10 x the tolerance
        compare(name, x.astype(dtype), y, state, dtype, num_classes=num_classes,
                grad_floor=10.0 if dtype == "float32" else 1.0)


@pytest.mark.parametrize("easy", [False, True])
def test_parity_arcface_options_and_fallback(easy):
    rng = np.random.default_rng(5)
    state = random_state("arcface", 3, 4, rng)
    y = np.array([0, 1, 2, 0, 1, 2])
    # targets on both sides of theta = pi/2 and of theta = pi - m: every branch is taken
    x = target_angle_inputs(np.array([0.3, 1.4, 1.7, 2.5, 2.7, 3.0]), state["weight"], y, rng)
    for dtype in ("float32", "float64"):
        compare("arcface", x.astype(dtype), y, state, dtype, hp={"easy_margin": easy})


STATEFUL = [n for n in NAMES
            if any(k in n for k in ("center", "ring", "sphereface", "adaface", "magface"))]


@pytest.mark.parametrize("name", STATEFUL)
def test_parity_after_optimiser_steps(name):
    """SGD on the learned state + ``step()`` for 4 iterations; state and values must agree."""
    import torch
    from mxnet import autograd, nd

    rng = np.random.default_rng(7)
    num_classes, dim, batch, lr = 5, 4, 8, 0.1
    state = random_state(name, num_classes, dim, rng)
    tl = torch_loss(name, num_classes, dim, state, {}, "float64")
    gl = gluon_loss(name, num_classes, dim, state, {}, "float64", hybridize=True)
    learned_t = {k: v for k, v in tl.state_items().items() if k in LEARNED}
    learned_g = {k: v for k, v in gl.state_items().items() if k in LEARNED}
    for _ in range(4):
        x = rng.normal(size=(batch, dim)) * 2.0
        y = rng.integers(0, num_classes, size=batch)
        xt, yt = torch.tensor(x), torch.tensor(y)
        tl.zero_grad()
        tv = tl(xt, yt)
        tv.backward()
        xg, yg = nd.array(x, dtype="float64"), nd.array(y, dtype="float64")
        with autograd.record():
            gv = gl(xg, yg)
        gv.backward()
        assert_close(gv.asscalar(), float(tv.detach()), "float64", f"{name} value")
        with torch.no_grad():
            for p in learned_t.values():
                p -= lr * p.grad
        for p in learned_g.values():
            p.set_data(p.data() - lr * p.grad())
        tl.step(xt, yt)
        gl.step(xg, yg)
    ts, gs = TL.loss_state(tl), GL.loss_state(gl)
    assert ts.keys() == gs.keys()
    for key in ts:
        assert_close(gs[key], ts[key], "float64", f"{name} state {key}")
        if key != "weight":
            assert not np.allclose(ts[key], state[key]), f"{key} did not move"


@pytest.mark.parametrize("name", NAMES)
def test_hybridized_equals_imperative(name):
    rng = np.random.default_rng(2)
    num_classes, dim, batch = 6, 5, 7
    state = random_state(name, num_classes, dim, rng)
    x = rng.normal(size=(batch, dim))
    y = labels_for("duplicates", batch, num_classes, rng)
    for dtype in ("float32", "float64"):
        st = {k: v if k == "iteration" else v.astype(dtype) for k, v in state.items()}
        loss = gluon_loss(name, num_classes, dim, st, {}, dtype)
        iv, ig = gluon_eval(loss, x, y, dtype)
        loss.hybridize()
        hv, hg = gluon_eval(loss, x, y, dtype)
        hv2, _ = gluon_eval(loss, x, y, dtype)  # the cached graph, second call
        assert_close(hv, iv, dtype, "value", floor=1.0)
        assert hv2 == hv
        for key in ig:
            assert_close(hg[key], ig[key], dtype, key)
