"""Our losses against pytorch-metric-learning and gluonfr on the same inputs (float64).

Conventions converted: PML margins are degrees and its W is D x C; gluonfr's margin losses
take the cosine matrix (our normalisation feeds them), ArcLoss defaults to easy_margin=True.
Where a peer differs by design the test compares the shared part and says why.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from loss_backends import target_angle_inputs, torch_eval, torch_loss
from mxnet import autograd, nd

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
gluonfr_loss = pytest.importorskip("gluonfr.loss")

C, D, B = 6, 5, 8


def _inputs(seed):
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(C, D))
    y = rng.integers(0, C, size=B)
    # targets spread over [0, pi): both arcface branches are taken
    x = target_angle_inputs(np.linspace(0.2, 3.0, B), weight, y, rng, norm=2.5)
    return x, y, weight


def _pml_eval(loss, x, y, weight):
    with torch.no_grad():
        loss.W.copy_(torch.tensor(weight.T))
    xt = torch.tensor(x, requires_grad=True)
    value = loss(xt, torch.tensor(y))
    value.backward()
    return float(value.detach()), xt.grad.numpy(), loss.W.grad.numpy().T


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("ours", "pml", "hp", "pml_kw"), [
    ("arcface", "ArcFaceLoss", {"margin": 0.5, "scale": 64.0},
     {"margin": math.degrees(0.5), "scale": 64.0}),
    ("arcface", "ArcFaceLoss", {"margin": 0.3, "scale": 16.0},
     {"margin": math.degrees(0.3), "scale": 16.0}),
    ("cosface", "CosFaceLoss", {"margin": 0.35, "scale": 64.0}, {"margin": 0.35, "scale": 64.0}),
    ("normface", "NormalizedSoftmaxLoss", {"scale": 20.0}, {"temperature": 0.05}),
])
def test_matches_pml(ours, pml, hp, pml_kw, seed):
    x, y, weight = _inputs(seed)
    peer = getattr(pml_losses, pml)(num_classes=C, embedding_size=D, **pml_kw).double()
    pv, pgx, pgw = _pml_eval(peer, x, y, weight)
    value, grads = torch_eval(torch_loss(ours, C, D, {"weight": weight}, hp, "float64"), x, y,
                              "float64")
    np.testing.assert_allclose(value, pv, rtol=1e-10)
    np.testing.assert_allclose(grads["x"], pgx, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(grads["weight"], pgw, rtol=1e-8, atol=1e-12)


def test_sphereface_psi_matches_pml():
    """PML's SphereFaceLoss has no lambda annealing (lambda = 0, target |x| psi(theta)), ours
    follows SPEC (lambda >= 5), so only psi(theta) itself is compared, over all k."""
    peer = pml_losses.SphereFaceLoss(num_classes=C, embedding_size=D, margin=4).double()
    ours = torch_loss("sphereface", C, D, None, {"margin": 4}, "float64")
    cos = torch.cos(torch.linspace(0.0, math.pi, 181, dtype=torch.float64))
    np.testing.assert_allclose(ours.psi(cos).numpy(),
                               peer.modify_cosine_of_target_classes(cos).numpy(),
                               rtol=1e-10, atol=1e-12)


def _cosine_in_gluon(x, weight):
    xg = nd.array(x, dtype="float64")
    wg = nd.array(weight, dtype="float64")
    xg.attach_grad()
    return xg, wg


def _gluon_peer(peer, x, y, weight, scale_x=None):
    """Value and d/dx of peer(cos, y) with cos = x^ . W^ built in the autograd graph."""
    xg, wg = _cosine_in_gluon(x, weight)
    with autograd.record():
        xn = xg / nd.norm(xg, axis=1, keepdims=True)
        wn = wg / nd.norm(wg, axis=1, keepdims=True)
        cos = nd.dot(xn, wn, transpose_b=True)
        value = peer(cos, nd.array(y, dtype="float64")).mean()
    value.backward()
    return float(value.asscalar()), xg.grad.asnumpy()


@pytest.mark.parametrize("easy", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_arcface_matches_gluonfr(easy, seed):
    x, y, weight = _inputs(seed)
    peer = gluonfr_loss.ArcLoss(classes=C, m=0.5, s=64, easy_margin=easy, dtype="float64")
    pv, pgx = _gluon_peer(peer, x, y, weight)
    value, grads = torch_eval(torch_loss("arcface", C, D, {"weight": weight},
                                         {"easy_margin": easy}, "float64"), x, y, "float64")
    np.testing.assert_allclose(value, pv, rtol=1e-10)
    np.testing.assert_allclose(grads["x"], pgx, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_cosface_matches_gluonfr(seed):
    x, y, weight = _inputs(seed)
    peer = gluonfr_loss.CosLoss(classes=C, m=0.35, s=64, dtype="float64")
    pv, pgx = _gluon_peer(peer, x, y, weight)
    value, grads = torch_eval(torch_loss("cosface", C, D, {"weight": weight}, {}, "float64"),
                              x, y, "float64")
    np.testing.assert_allclose(value, pv, rtol=1e-10)
    np.testing.assert_allclose(grads["x"], pgx, rtol=1e-7, atol=1e-10)


def test_sphereface_matches_gluonfr_at_lambda_min():
    """gluonfr's ASoftmax anneals lambda with other constants (1500, 0.1) and a constant
    scale s; with lambda at its floor 5 in both and every |x| = s the formulas coincide."""
    x, y, weight = _inputs(0)
    norm = 2.5  # _inputs gives every row this norm
    peer = gluonfr_loss.ASoftmax(classes=C, m=4, s=norm, dtype="float64")
    peer.it = 10**6  # its lambda = max(5, 1500 / (1 + 0.1 it)) = 5
    pv, _ = _gluon_peer(peer, x, y, weight)
    state = {"weight": weight, "iteration": np.array([10**4], dtype=np.int64)}
    value, _ = torch_eval(torch_loss("sphereface", C, D, state, {}, "float64"), x, y, "float64")
    np.testing.assert_allclose(value, pv, rtol=1e-10)


def test_ring_matches_gluonfr():
    """gluonfr's RingLoss takes the logits (W x) and the embeddings; same formula as ours."""
    x, y, weight = _inputs(1)
    x = x * np.linspace(0.5, 2.0, B)[:, None]
    peer = gluonfr_loss.RingLoss(lamda=0.01, r_init=1.5, dtype="float64")
    peer.initialize()
    peer.cast("float64")
    xg, wg = _cosine_in_gluon(x, weight)
    with autograd.record():
        value = peer(nd.dot(xg, wg, transpose_b=True), nd.array(y, dtype="float64"), xg).mean()
    value.backward()
    state = {"weight": weight, "radius": np.array([1.5])}
    ours, grads = torch_eval(torch_loss("ring", C, D, state, {}, "float64"), x, y, "float64")
    np.testing.assert_allclose(ours, float(value.asscalar()), rtol=1e-10)
    np.testing.assert_allclose(grads["x"], xg.grad.asnumpy(), rtol=1e-8, atol=1e-12)


def test_center_differs_from_gluonfr_by_design():
    """gluonfr's CenterLoss divides each sample's term by its class count in the batch; SPEC
    (Wen et al.) averages over the batch. With distinct labels the two coincide."""
    x, _, weight = _inputs(2)
    x, y = x[:C], np.arange(C)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(C, D))
    peer = gluonfr_loss.CenterLoss(classes=C, embedding_size=D, lamda=0.01, dtype="float64")
    peer.initialize()
    peer.cast("float64")
    peer.centers.set_data(nd.array(centers, dtype="float64"))
    xg, wg = _cosine_in_gluon(x, weight)
    value = peer(nd.dot(xg, wg, transpose_b=True), nd.array(y, dtype="float64"), xg).mean()
    state = {"weight": weight, "centers": centers}
    ours, _ = torch_eval(torch_loss("center", C, D, state, {}, "float64"), x, y, "float64")
    np.testing.assert_allclose(ours, float(value.asscalar()), rtol=1e-10)
