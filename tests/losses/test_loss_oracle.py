"""Every registered loss, both backends, against the NumPy oracle (tests/oracles.py), float64.

Value to 1e-10 relative; gradients w.r.t. embeddings and learned state (weight, radius)
against central differences of the oracle; state updates (centre rule, SphereFace counter)
against the oracle's. The list comes from ``list_losses()``, the formulas from
``tests/oracles.py``: a new loss needs one entry there (``ORACLES``; a joint "<base>+<aux>" is
derived from its parts), and fails here with a message saying so until it has one.
"""

from __future__ import annotations

import numpy as np
import pytest
from loss_backends import LEARNED, gluon_eval, gluon_loss, random_state, torch_eval, torch_loss
from oracles import MissingOracle, center_update, defaults, loss_value, numeric_grad

from gluon_impl import losses as GL
from pytorch_impl import losses as TL

NAMES = TL.list_losses()
# non-default hyper-parameters that take other branches of the formulas
VARIANTS = {
    "arcface": [{"easy_margin": True}, {"margin": 0.3, "scale": 16.0}],
    "combined": [{"m1": 0.9, "m2": 0.2, "m3": 0.1}],
    "sphereface": [{"margin": 3}, {"margin": 1}],
    "cosface": [{"margin": 0.2, "scale": 8.0}],
    "triplet": [{"margin": 1.0}],
    "arcface+center": [{"lambda_": 0.5, "margin": 0.2}],
    # norms of the test embeddings (0.5-5) inside [l_a, u_a], so m(a) and g(a) have gradients
    "magface": [{"lower_norm": 0.5, "upper_norm": 6.0, "lambda_g": 0.5}],
    "adaface": [{"h": 3.0, "t_alpha": 0.5}],
}
CASES = [(n, {}) for n in NAMES] + [(n, hp) for n, hps in VARIANTS.items() for hp in hps]


def _expect_oracle(name):
    try:
        defaults(name)
    except MissingOracle as exc:
        pytest.fail(exc.args[0], pytrace=False)


def _check(name, hp, backend, seed):
    rng = np.random.default_rng(seed)
    num_classes, dim, batch = 5, 4, 6
    state = random_state(name, num_classes, dim, rng)
    x = rng.normal(size=(batch, dim)) * rng.uniform(0.5, 3.0)
    y = rng.integers(0, num_classes, size=batch)
    y[:2] = y[2]  # a positive pair for the pair losses
    if backend == "torch":
        value, grads = torch_eval(torch_loss(name, num_classes, dim, state, hp, "float64"),
                                  x, y, "float64")
    else:
        value, grads = gluon_eval(gluon_loss(name, num_classes, dim, state, hp, "float64"),
                                  x, y, "float64")
    expect = loss_value(name, x, y, state, hp)
    np.testing.assert_allclose(value, expect, rtol=1e-10, atol=1e-12)
    norms = np.sqrt((x * x).sum(axis=1))  # held fixed where the formula detaches |x|
    num_x = numeric_grad(lambda a: loss_value(name, a, y, state, hp, fixed_norms=norms), x)
    np.testing.assert_allclose(grads["x"], num_x, rtol=1e-5, atol=1e-6 * max(1, abs(num_x).max()))
    for key in LEARNED:
        if key in state:
            num = numeric_grad(lambda a, k=key: loss_value(name, x, y, {**state, k: a}, hp),
                               state[key])
            np.testing.assert_allclose(grads[key], num, rtol=1e-5,
                                       atol=1e-6 * max(1, abs(num).max()), err_msg=key)


@pytest.mark.parametrize("backend", ["torch", "gluon"])
@pytest.mark.parametrize(("name", "hp"), CASES, ids=[f"{n}-{hp}" for n, hp in CASES])
def test_value_and_gradient_match_oracle(name, hp, backend):
    _expect_oracle(name)
    for seed in range(2):
        _check(name, hp, backend, seed)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_the_spec_table(name):
    _expect_oracle(name)
    expect = defaults(name)
    assert TL.base.loss_class(name) is not GL.base.loss_class(name)  # two registries
    for reg in (TL, GL):
        cls = reg.base.loss_class(name)
        assert cls.hyperparameters() == expect, (reg.__name__, name)


@pytest.mark.parametrize("name", [n for n in NAMES if n == "center" or n.endswith("+center")])
def test_center_update_matches_alpha_rule(name):
    rng = np.random.default_rng(3)
    num_classes, dim = 6, 4
    state = random_state(name, num_classes, dim, rng)
    x = rng.normal(size=(7, dim))
    y = np.array([0, 0, 2, 2, 2, 5, 1])
    expect = center_update(state["centers"], x, y, defaults(name)["alpha"])
    assert not np.allclose(expect, state["centers"])
    tl = torch_loss(name, num_classes, dim, state, {}, "float64")
    gl = gluon_loss(name, num_classes, dim, state, {}, "float64")
    import torch
    from mxnet import nd

    tl.step(torch.tensor(x), torch.tensor(y))
    gl.step(nd.array(x, dtype="float64"), nd.array(y, dtype="float64"))
    np.testing.assert_allclose(TL.loss_state(tl)["centers"], expect, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(GL.loss_state(gl)["centers"], expect, rtol=1e-12, atol=1e-14)


def test_sphereface_lambda_anneals_with_step():
    import torch
    from mxnet import nd

    tl = torch_loss("sphereface", 3, 2, None, {}, "float64")
    gl = gluon_loss("sphereface", 3, 2, None, {}, "float64", hybridize=True)
    x, y = np.ones((2, 2)), np.array([0, 1])
    for t in range(4):
        lam = max(5.0, 1000.0 / (1.0 + 0.12 * t))
        assert abs(float(tl.current_lambda()) - lam) < 1e-9
        assert TL.loss_state(tl)["iteration"].tolist() == [t]
        assert GL.loss_state(gl)["iteration"].tolist() == [t]
        gl(nd.array(x, dtype="float64"), nd.array(y, dtype="float64"))  # forward: no count
        tl.step(torch.tensor(x), torch.tensor(y))
        gl.step(nd.array(x, dtype="float64"), nd.array(y, dtype="float64"))
    assert abs(float(tl.current_lambda(torch.float64)) - 5.0) > 1.0
