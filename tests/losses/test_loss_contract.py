"""Contracts of every registered loss in both backends: registry, mirrored signatures,
argument and input errors (same text), untouched inputs, finite values and gradients
(including torch float16/bfloat16 autocast), state exchange and the P x K flag."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from loss_backends import gluon_eval, gluon_loss, random_state, torch_eval, torch_loss
from mxnet import nd

from gluon_impl import losses as GL
from pytorch_impl import losses as TL

NAMES = TL.list_losses()


def test_same_registry_in_both_backends():
    assert TL.list_losses() == GL.list_losses()
    required = {"softmax", "l2softmax", "normface", "sphereface", "cosface", "arcface",
                "combined", "center", "ring", "triplet", "contrastive", "arcface+center",
                "cosface+ring", "adaface", "magface"}
    assert required <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_mirrored_class_names_signatures_and_defaults(name):
    tc, gc = TL.base.loss_class(name), GL.base.loss_class(name)
    assert tc.__name__ == gc.__name__
    assert inspect.signature(tc.__init__) == inspect.signature(gc.__init__)
    assert tc.hyperparameters() == gc.hyperparameters()
    assert tc.requires_pk_batches == gc.requires_pk_batches == (name in ("triplet",
                                                                         "contrastive"))
    # the formula and paper are written once, on the torch side; Gluon points there
    assert tc.__doc__ and "pytorch_impl" in (gc.__doc__ or "") + str(inspect.getmodule(gc).__doc__)


@pytest.mark.parametrize("reg", [TL, GL], ids=["torch", "gluon"])
def test_registry_errors(reg):
    with pytest.raises(ValueError, match="unknown loss 'arcfase'; known losses: .*arcface"):
        reg.build_loss("arcfase", num_classes=3, embedding_size=2)
    with pytest.raises(ValueError, match="already registered"):
        reg.base.register_loss("arcface")(type("Dup", (), {}))
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) s; allowed: scale=64.0"):
        reg.build_loss("arcface", num_classes=3, embedding_size=2, s=30)


BAD_ARGS = [
    ("arcface", {"margin": -0.1}, "margin"),
    ("arcface", {"margin": math.pi}, "margin"),
    ("arcface", {"easy_margin": 1}, "easy_margin"),
    ("arcface", {"scale": 0.0}, "scale"),
    ("arcface+center", {"margin": 4.0}, "margin"),
    ("cosface", {"margin": float("nan")}, "margin"),
    ("combined", {"m1": 0.0}, "m1"),
    ("combined", {"m2": 3.2}, "m2"),
    ("sphereface", {"margin": 2.5}, "margin"),
    ("sphereface", {"margin": True}, "margin"),
    ("sphereface", {"margin": 0}, "margin"),
    ("center", {"alpha": 1.5}, "alpha"),
    ("center", {"lambda_": -1.0}, "lambda_"),
    ("ring", {"radius": -2.0}, "radius"),
    ("triplet", {"margin": -0.3}, "margin"),
    ("contrastive", {"margin": 0.0}, "margin"),
]


@pytest.mark.parametrize(("name", "hp", "arg"), BAD_ARGS)
def test_bad_hyperparameters_raise_same_message(name, hp, arg):
    messages = []
    for reg in (TL, GL):
        with pytest.raises(ValueError, match=f"argument '{arg}' must be") as err:
            reg.build_loss(name, num_classes=4, embedding_size=3, **hp)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert repr(list(hp.values())[0]) in messages[0]


@pytest.mark.parametrize("sizes", [(0, 3), (4, 0), (4.5, 3)])
def test_bad_sizes(sizes):
    for reg in (TL, GL):
        with pytest.raises(ValueError, match="must be an integer"):
            reg.build_loss("arcface", num_classes=sizes[0], embedding_size=sizes[1])


BAD_INPUTS = {
    "labels out of range": (np.zeros((3, 4)), np.array([0, 1, 5]), r"labels must be in \[0, 5\)"),
    "negative label": (np.zeros((3, 4)), np.array([0, -1, 2]), r"labels must be in \[0, 5\)"),
    "wrong dim": (np.zeros((3, 5)), np.array([0, 1, 2]), r"shape \(B, 4\)"),
    "labels length": (np.zeros((3, 4)), np.array([0, 1]), r"labels must be integers of shape"),
    "nan": (np.array([[0, 1, 2, np.nan]] * 3), np.array([0, 1, 2]), "NaN or Inf"),
    "empty": (np.zeros((0, 4)), np.zeros(0, dtype=np.int64), "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("name", ["arcface", "sphereface", "triplet", "cosface+ring"])
def test_bad_inputs_raise_same_message(name, case):
    x, y, pattern = BAD_INPUTS[case]
    messages = []
    tl = torch_loss(name, 5, 4, None, {}, "float32")
    with pytest.raises(ValueError, match=pattern) as err:
        tl(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64))
    messages.append(str(err.value))
    gl = gluon_loss(name, 5, 4, None, {}, "float32", hybridize=True)
    with pytest.raises(ValueError, match=pattern) as err:
        gl(nd.array(x), nd.array(y))
    messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("name", NAMES)
def test_inputs_unchanged_and_weight_exposed(name):
    rng = np.random.default_rng(0)
    state = random_state(name, 5, 4, rng, "float32")
    x, y = rng.normal(size=(6, 4)).astype(np.float32), np.array([0, 1, 1, 2, 4, 0])
    xt, yt = torch.tensor(x, requires_grad=True), torch.tensor(y)
    tl = torch_loss(name, 5, 4, state, {}, "float32")
    tl(xt, yt).backward()
    assert np.array_equal(xt.detach().numpy(), x) and np.array_equal(yt.numpy(), y)
    gl = gluon_loss(name, 5, 4, state, {}, "float32")
    xg, yg = nd.array(x), nd.array(y)
    gluon_eval(gl, xg.asnumpy(), y, "float32")
    assert np.array_equal(xg.asnumpy(), x) and np.array_equal(yg.asnumpy(), y)
    if "weight" in state:
        assert tuple(tl.weight.shape) == tuple(gl.weight.shape) == state["weight"].shape
        assert state["weight"].shape[0] % 5 == 0 and state["weight"].shape[1] == 4
        assert np.array_equal(gl.weight.data().asnumpy(), state["weight"])


def _extreme_inputs(rng, weight):
    d = weight.shape[1]
    return [
        rng.normal(size=(6, d)) * 1e4,  # large norms
        rng.normal(size=(6, d)) * 1e-20,  # tiny norms
        np.zeros((6, d)),  # zero embeddings
        np.concatenate([weight[:3] * 7.0, -weight[:3]]),  # cos exactly +1 and -1
    ]


@pytest.mark.parametrize("name", NAMES)
def test_finite_value_and_gradient_for_finite_inputs(name):
    rng = np.random.default_rng(1)
    state = random_state(name, 5, 4, rng, "float32")
    weight = state.get("weight", rng.normal(size=(5, 4)))
    y = np.array([0, 1, 2, 0, 1, 2])
    for x in _extreme_inputs(rng, weight):
        for backend in ("torch", "gluon"):
            if backend == "torch":
                run = torch_eval(torch_loss(name, 5, 4, state, {}, "float32"), x, y, "float32")
            else:
                run = gluon_eval(gluon_loss(name, 5, 4, state, {}, "float32"), x, y, "float32")
            value, grads = run
            assert np.isfinite(value), (name, backend)
            for key, g in grads.items():
                assert np.isfinite(g).all(), (name, key)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_torch_autocast_backbone(name, dtype):
    """A backbone under autocast hands the loss half-precision embeddings; the loss runs in
    float32 and gives finite values and gradients (CPU autocast; fp16 where supported)."""
    torch.manual_seed(0)
    backbone = torch.nn.Linear(8, 4)
    loss = TL.build_loss(name, num_classes=5, embedding_size=4)
    images = torch.randn(6, 8) * 30.0
    y = torch.tensor([0, 1, 1, 2, 4, 0])
    with torch.autocast(device_type="cpu", dtype=dtype):
        emb = backbone(images)
        assert emb.dtype == dtype
        value = loss(emb, y)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    for p in list(backbone.parameters()) + list(loss.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_state_roundtrip_and_errors(name):
    rng = np.random.default_rng(4)
    state = random_state(name, 5, 4, rng, "float32")
    for reg, loss in ((TL, torch_loss(name, 5, 4, state, {}, "float32")),
                      (GL, gluon_loss(name, 5, 4, state, {}, "float32"))):
        out = reg.loss_state(loss)
        assert out.keys() == state.keys()
        for key in state:
            assert np.array_equal(out[key], state[key]), key
            assert out[key].dtype == state[key].dtype, key
        with pytest.raises(ValueError, match=r"unexpected \['bogus'\]"):
            reg.load_loss_state(loss, {**state, "bogus": np.zeros(1)})
        if not state:
            continue
        with pytest.raises(ValueError, match="missing"):
            reg.load_loss_state(loss, {})
        key = next(iter(state))
        with pytest.raises(ValueError, match=f"state '{key}' must have shape"):
            reg.load_loss_state(loss, {**state, key: np.zeros((1, 1, 1))})


def test_margin_changes_the_gradient():
    """The margin is not computed under no_grad: ArcFace's gradient differs from NormFace's
    at the same scale (InsightFace issues #2255, #2309)."""
    rng = np.random.default_rng(9)
    state = random_state("arcface", 5, 4, rng)
    x, y = rng.normal(size=(6, 4)), np.array([0, 1, 1, 2, 4, 0])
    _, g_arc = torch_eval(torch_loss("arcface", 5, 4, state, {}, "float64"), x, y, "float64")
    _, g_norm = torch_eval(torch_loss("normface", 5, 4, state, {"scale": 64.0}, "float64"),
                           x, y, "float64")
    assert not np.allclose(g_arc["x"], g_norm["x"], rtol=1e-3)


def test_fused_head_refuses_a_second_backward():
    """The torch head reuses its softmax buffer for the gradient; retain_graph reuse must fail
    loudly rather than return a wrong gradient."""
    loss = TL.build_loss("arcface", num_classes=5, embedding_size=4)
    x = torch.randn(3, 4, requires_grad=True)
    value = loss(x, torch.tensor([0, 1, 2]))
    value.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward through the same graph twice"):
        value.backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_finite_finds_every_nan_and_inf(dtype):
    """The input check's one-pass test (``ops.all_finite``, aminmax) against isfinite, with the
    bad value at every position, and finite extremes that a sum would overflow."""
    from pytorch_impl import ops

    x = torch.randn(5, 7, dtype=dtype)
    assert ops.all_finite(x) and ops.all_finite(x[:0])
    huge = torch.full((3, 4), torch.finfo(dtype).max, dtype=dtype)
    huge[1] *= -1
    assert ops.all_finite(huge)
    for bad in (float("nan"), float("inf"), -float("inf")):
        for i in range(x.numel()):
            y = x.clone().view(-1)
            y[i] = bad
            assert not ops.all_finite(y.view(5, 7)), (bad, i)
    big = torch.randn(256, 512, dtype=dtype)
    big[255, 511] = float("nan")  # the tail a vectorised reduction handles apart
    assert not ops.all_finite(big)
