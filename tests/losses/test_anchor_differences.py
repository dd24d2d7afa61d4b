"""Where our losses differ from the anchors' code, measured (docs/ANCHORS.md, one test per row).

The anchors: InsightFace ``arcface_torch`` (not pip-installable: its margin step is re-expressed
below from ``recognition/arcface_torch/losses.py`` and ``partial_fc_v2.py``), pytorch-metric-
learning (PML) and gluonfr (both installed in the test environment). Rows already compared in
tests/losses/test_loss_peers.py (PML ArcFace/CosFace/NormFace, the SphereFace psi, gluonfr CosLoss,
ArcLoss with easy_margin given explicitly, ASoftmax at lambda's floor, RingLoss, CenterLoss with
distinct labels) are not repeated here. Every test asserts both sides: that the anchor computes
the formula the row names, and that ours computes ours, so a change on either side fails it.
All in float64.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from loss_backends import target_angle_inputs
from mxnet import nd

from gluon_impl import losses as GL
from pytorch_impl import losses as TL

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")
gluonfr_loss = pytest.importorskip("gluonfr.loss")

C, D, B = 6, 5, 12


def _batch(seed, thetas=None, norm=2.5):
    """Weights, labels and embeddings at the given target angles (default: spread over (0, pi))."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(C, D))
    y = rng.integers(0, C, size=B)
    thetas = np.linspace(0.2, 3.0, B) if thetas is None else thetas
    return target_angle_inputs(thetas, weight, y, rng, norm=norm), y, weight


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _ce(logits, y):
    """Mean softmax cross-entropy of NumPy logits (the common tail of every classifier here)."""
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(lse - logits[np.arange(len(y)), y]))


def _torch_ours(name, x, y, state, num_classes=C, **hp):
    """Our PyTorch loss: value and d/dx."""
    loss = TL.build_loss(name, num_classes=num_classes, embedding_size=D, **hp).double()
    if state is not None:
        TL.load_loss_state(loss, state)
    xt = torch.tensor(x, requires_grad=True)
    value = loss(xt, torch.tensor(y, dtype=torch.int64))
    value.backward()
    return float(value.detach()), xt.grad.numpy()


def _gluon_ours(name, x, y, state, num_classes=C, **hp):
    """Our Gluon loss's value; initialised here unless the registry already did it."""
    loss = GL.build_loss(name, num_classes=num_classes, embedding_size=D, **hp)
    with warnings.catch_warnings():  # "already initialized" where build_loss initialises
        warnings.simplefilter("ignore")
        loss.initialize(force_reinit=False)
    loss.cast("float64")
    if state is not None:
        GL.load_loss_state(loss, state)
    value = loss(nd.array(x, dtype="float64"), nd.array(y, dtype="float64"))
    return float(value.asnumpy().reshape(-1)[0])


def _per_sample_mean(block, *inputs):
    return float(block(*[nd.array(a, dtype="float64") for a in inputs]).mean().asscalar())


# -- arcface_torch ---------------------------------------------------------------------------
# Re-expressed from deepinsight/insightface recognition/arcface_torch at commit 7fadd42 (losses.py
# CombinedMarginLoss.forward and CosFace, partial_fc_v2.py PartialFC_V2.forward with
# sample_rate 1 on one rank, interclass_filtering_threshold 0): the same branches, the same
# in-place update of the logits under no_grad, the same clamp.

def _arcface_torch_margin(logits, labels, s, m1, m2, m3):
    rows = torch.nonzero(labels != -1)[:, 0]
    cols = labels[rows]
    if m1 == 1.0 and m3 == 0.0:  # ArcFace: the margin is added to the angle of the values only
        with torch.no_grad():
            angles = logits.arccos()
            angles[rows, cols] += m2
            logits.copy_(angles.cos())  # in place: the graph sees logits * s alone
        return logits * s
    if m3 > 0:  # CosFace(m3), whatever m1 and m2 are
        logits[rows, cols] = logits[rows, cols] - m3
        return logits * s
    raise ValueError("arcface_torch raises for m1 != 1 with m3 == 0")


def _arcface_torch_eval(x, y, weight, s=64.0, margins=(1.0, 0.5, 0.0)):
    """Value, d/dx and d/d(cos matrix) of PartialFC + CombinedMarginLoss + cross-entropy."""
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(weight, requires_grad=True)
    cos = F.linear(F.normalize(xt), F.normalize(wt)).clamp(-1, 1)
    cos.retain_grad()
    value = F.cross_entropy(_arcface_torch_margin(cos, torch.tensor(y), s, *margins),
                            torch.tensor(y))
    value.backward()
    return float(value.detach()), xt.grad.numpy(), cos.grad.numpy()


def _our_arcface_cos_grad(x, y, weight, s=64.0, m=0.5):
    """d(our ArcFace)/d(cos matrix), from the loss module's own target-logit function."""
    from pytorch_impl.losses.arcface import arc_margin

    cos = torch.tensor(_unit(x) @ _unit(weight).T, requires_grad=True)
    rows, yt = torch.arange(len(y)), torch.tensor(y)
    logits = cos.index_put((rows, yt), arc_margin(cos[rows, yt], m, False)) * s
    F.cross_entropy(logits, yt).backward()
    return cos.grad.numpy()


def test_arcface_torch_margin_is_straight_through():
    """arcface_torch computes the margin under no_grad: same forward as ours, but the target
    column's gradient misses the factor d cos(theta + m) / d cos(theta) = sin(theta + m) /
    sin(theta); every other entry is the same. Figures for m = 0.5, s = 64 (ANCHORS.md)."""
    thetas = np.linspace(0.3, 2.6, B)  # all below pi - m: no fallback branch involved
    x, y, weight = _batch(0, thetas)
    ours_value, ours_dx = _torch_ours("arcface", x, y, {"weight": weight})
    at_value, at_dx, at_dcos = _arcface_torch_eval(x, y, weight)
    np.testing.assert_allclose(at_value, ours_value, rtol=1e-12)
    ours_dcos = _our_arcface_cos_grad(x, y, weight)
    rows = np.arange(B)
    np.testing.assert_allclose(ours_dcos[rows, y] / at_dcos[rows, y],
                               np.sin(thetas + 0.5) / np.sin(thetas), rtol=1e-8)
    off = np.ones_like(at_dcos, dtype=bool)
    off[rows, y] = False
    np.testing.assert_allclose(at_dcos[off], ours_dcos[off], rtol=1e-10, atol=1e-14)
    assert np.linalg.norm(at_dx - ours_dx) / np.linalg.norm(ours_dx) > 0.1

    # the figures: at theta = pi/2 (a fresh network) the target entry is 13.95 % off; on random
    # 128-d embeddings and weights (cosines near 0) the whole gradient is 11.1 % (cos matrix)
    # and 11.4 % (embeddings) apart
    r = math.sin(math.pi / 2 + 0.5) / math.sin(math.pi / 2)
    assert abs(1 / r - 1 - 0.1395) < 5e-4
    rng = np.random.default_rng(0)
    w128, x128, y128 = rng.normal(size=(10, 128)), rng.normal(size=(64, 128)), \
        rng.integers(0, 10, 64)
    at_value, at_dx, at_dcos = _arcface_torch_eval(x128, y128, w128)
    ours_dcos = _our_arcface_cos_grad(x128, y128, w128)
    loss = TL.build_loss("arcface", num_classes=10, embedding_size=128).double()
    TL.load_loss_state(loss, {"weight": w128})
    xt = torch.tensor(x128, requires_grad=True)
    value = loss(xt, torch.tensor(y128))
    value.backward()
    np.testing.assert_allclose(at_value, float(value.detach()), rtol=1e-12)
    rel_cos = np.linalg.norm(at_dcos - ours_dcos) / np.linalg.norm(ours_dcos)
    rel_dx = np.linalg.norm(at_dx - xt.grad.numpy()) / np.linalg.norm(xt.grad.numpy())
    assert abs(rel_cos - 0.111) < 5e-3 and abs(rel_dx - 0.114) < 5e-3, (rel_cos, rel_dx)


def test_arcface_torch_has_no_fallback_beyond_pi_minus_m():
    """Where theta + m > pi arcface_torch keeps cos(theta + m), which rises again towards
    cos(pi + m) = -cos(m); ours switches to cos - m sin(m), monotone in theta."""
    m = 0.5
    x, y, weight = _batch(1, np.linspace(2.0, math.pi, B))  # pi - m = 2.64 lies inside
    cos = torch.tensor(_unit(x) @ _unit(weight).T).clamp(-1, 1)
    logits = _arcface_torch_margin(cos.clone(), torch.tensor(y), 1.0, 1.0, m, 0.0).numpy()
    rows = np.arange(B)
    theta = np.arccos(np.clip(cos.numpy()[rows, y], -1, 1))
    np.testing.assert_allclose(logits[rows, y], np.cos(theta + m), rtol=1e-10)
    from pytorch_impl.losses.arcface import arc_margin

    ours = arc_margin(cos[rows, y], m, False).numpy()
    below = theta < math.pi - m
    np.testing.assert_allclose(ours[below], logits[rows, y][below], rtol=1e-10)
    np.testing.assert_allclose(ours[~below], np.cos(theta[~below]) - m * math.sin(m), rtol=1e-10)
    # the figure: at theta = pi the target cosine is -0.878 there, -1.240 here
    at_pi = np.abs(theta - math.pi) < 1e-6
    np.testing.assert_allclose(logits[rows, y][at_pi], -math.cos(m), rtol=1e-6)
    np.testing.assert_allclose(ours[at_pi], -1.0 - m * math.sin(m), rtol=1e-6)
    order = np.argsort(theta)
    assert np.all(np.diff(ours[order]) < 0)
    assert np.any(np.diff(logits[rows, y][order]) > 0)  # not monotone
    # and so the loss: theirs is lower than ours on the targets beyond pi - m
    at_value, _, _ = _arcface_torch_eval(x, y, weight)
    ours_value, _ = _torch_ours("arcface", x, y, {"weight": weight})
    assert ours_value > at_value + 1.0


def test_arcface_torch_combined_ignores_m2_when_m3_is_positive():
    """CombinedMarginLoss(64, 1, 0.3, 0.2) takes its CosFace branch: it equals our
    cosface(margin=0.2), not our combined (s (cos(theta + 0.3) - 0.2))."""
    x, y, weight = _batch(2, np.linspace(0.2, 2.6, B))
    at_value, at_dx, _ = _arcface_torch_eval(x, y, weight, margins=(1.0, 0.3, 0.2))
    cos_value, cos_dx = _torch_ours("cosface", x, y, {"weight": weight}, margin=0.2)
    np.testing.assert_allclose(at_value, cos_value, rtol=1e-12)
    np.testing.assert_allclose(at_dx, cos_dx, rtol=1e-9, atol=1e-13)
    ours_value, ours_dx = _torch_ours("combined", x, y, {"weight": weight})
    assert ours_value - at_value > 5.0  # measured 49.1 vs 36.2 here
    assert np.linalg.norm(at_dx - ours_dx) / np.linalg.norm(ours_dx) > 0.2
    with pytest.raises(ValueError):  # no SphereFace-style m1 in arcface_torch
        _arcface_torch_margin(torch.zeros(2, 3), torch.tensor([0, 1]), 64.0, 2.0, 0.0, 0.0)


def test_arcface_torch_cosface_default_margin_is_0_4():
    """arcface_torch's CosFace class defaults to m = 0.40, ours (and the paper's) to 0.35; at
    the same margin the two agree (the CosFace branch has the true gradient)."""
    assert TL.build_loss("cosface", num_classes=C, embedding_size=D).margin == 0.35
    x, y, weight = _batch(3)
    at_value, at_dx, _ = _arcface_torch_eval(x, y, weight, margins=(1.0, 0.0, 0.40))
    ours_value, ours_dx = _torch_ours("cosface", x, y, {"weight": weight}, margin=0.40)
    np.testing.assert_allclose(at_value, ours_value, rtol=1e-12)
    np.testing.assert_allclose(at_dx, ours_dx, rtol=1e-9, atol=1e-13)
    default_value, _ = _torch_ours("cosface", x, y, {"weight": weight})
    assert abs(default_value - at_value) > 0.5


def test_arcface_torch_decays_every_parameter_we_decay_rank_2_and_up():
    """arcface_torch's SGD has one weight_decay for backbone.parameters() and the FC; our
    trainers decay only tensors of rank > 1 (tests/backends/test_train_parity.py checks both
    backends).
    Figure: MobileFaceNet, 133 of its 183 tensors (27,136 of 1,003,136 values: BN, PReLU)."""
    from pytorch_impl.backbones import build_backbone
    from pytorch_impl.train import Trainer

    torch.manual_seed(0)
    net = build_backbone("mobilefacenet", embedding_size=128, image_size=112)
    loss = TL.build_loss("arcface", num_classes=C, embedding_size=128)
    params = [p for p in list(net.parameters()) + list(loss.parameters()) if p.requires_grad]
    vectors = [p for p in params if p.ndim <= 1]
    assert (len(vectors), sum(p.numel() for p in vectors)) == (133, 27136)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    ours = Trainer(net, loss, weight_decay=5e-4)
    ours.set_lr(1.0)
    ours.optimizer.step()  # a zero gradient: only weight decay moves anything
    moved = [not torch.equal(p, b) for p, b in zip(params, before)]
    assert moved == [p.ndim > 1 for p in params]
    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b)
    anchor = torch.optim.SGD(params, lr=1.0, momentum=0.9, weight_decay=5e-4)
    anchor.step()
    assert all(torch.allclose(p, b * (1 - 5e-4)) for p, b in zip(params, before))


# -- gluonfr ---------------------------------------------------------------------------------

def test_gluonfr_arcloss_defaults_to_easy_margin():
    """gluonfr.loss.ArcLoss() is easy_margin=True: it equals our arcface(easy_margin=True) and
    not our default, which moves the target past theta = pi/2 too; it also refuses m >= pi/2."""
    x, y, weight = _batch(4)
    cos = _unit(x) @ _unit(weight).T
    peer = _per_sample_mean(gluonfr_loss.ArcLoss(classes=C, m=0.5, s=64, dtype="float64"),
                            cos, y)
    easy = _gluon_ours("arcface", x, y, {"weight": weight}, easy_margin=True)
    default = _gluon_ours("arcface", x, y, {"weight": weight})
    np.testing.assert_allclose(peer, easy, rtol=1e-12)
    assert default - peer > 5.0  # measured 61.8 vs 52.1 on this batch
    with pytest.raises(AssertionError):
        gluonfr_loss.ArcLoss(classes=C, m=1.6, s=64)
    assert TL.build_loss("arcface", num_classes=C, embedding_size=D, margin=1.6).margin == 1.6


def test_gluonfr_l2softmax_normalises_whatever_it_is_given():
    """gluonfr's L2Softmax L2-normalises its input and scales it: given the logits z = W x it
    computes CE(s z / |z|), not Ranjan's CE(W (s x / |x|)) that ours computes. Fed W x^ with
    from_normx=True it agrees with ours."""
    x, y, weight = _batch(5)
    z = x @ weight.T
    s = 30.0
    peer = _per_sample_mean(gluonfr_loss.L2Softmax(classes=C, alpha=s), z, y)
    np.testing.assert_allclose(peer, _ce(s * _unit(z), y), rtol=1e-9)
    ours, _ = _torch_ours("l2softmax", x, y, {"weight": weight})
    np.testing.assert_allclose(ours, _ce(s * _unit(x) @ weight.T, y), rtol=1e-12)
    assert abs(ours - peer) > 1.0
    fed_right = _per_sample_mean(gluonfr_loss.L2Softmax(classes=C, alpha=s, from_normx=True),
                                 _unit(x) @ weight.T, y)
    np.testing.assert_allclose(fed_right, ours, rtol=1e-9)


def _all_pairs(x, labels):
    i, j = np.triu_indices(len(labels), 1)
    xn = _unit(x)
    return xn[i], xn[j], (labels[i] == labels[j]).astype(np.float64)


def test_gluonfr_contrastive_uses_the_norm_of_the_squared_difference():
    """gluonfr's ContrastiveLoss takes d' = |(a - p)^2| = sqrt(sum_k (a_k - p_k)^4) as the
    'distance'; ours (Hadsell et al.) takes d = |a - p|. Same pairs, same margin, same mean."""
    x, _, _ = _batch(6)
    labels = np.repeat(np.arange(4), 3)
    a, p, same = _all_pairs(x, labels)
    peer = _per_sample_mean(gluonfr_loss.ContrastiveLoss(margin=1.0), a, p, same)
    d4 = np.sqrt(((a - p) ** 4).sum(axis=1))
    d = np.sqrt(((a - p) ** 2).sum(axis=1))

    def form(dist):
        return float(np.mean(same * dist ** 2 + (1 - same) * np.maximum(1.0 - dist, 0.0) ** 2))

    np.testing.assert_allclose(peer, form(d4), rtol=1e-12)
    ours, _ = _torch_ours("contrastive", x, labels, None, num_classes=4)
    np.testing.assert_allclose(ours, form(d), rtol=1e-12)
    assert abs(ours - peer) / ours > 0.01  # 2.0 % on this batch
    ratio = d4 / d
    # d'/d = sqrt(sum d_k^4) / |d| lies in [|d| / sqrt(D), |d|]: 0.31-1.27 on this batch
    assert ratio.min() < 0.6 and ratio.max() > 1.1


def test_gluonfr_center_divides_by_the_class_count():
    """gluonfr's CenterLoss divides each sample's |x - c|^2 by its label's count in the batch;
    ours averages over the batch (Wen et al.). With repeated labels the centre terms differ."""
    x, _, weight = _batch(7)
    y = np.array([0, 0, 0, 1, 1, 2, 3, 4, 5, 5, 5, 5])
    centers = np.random.default_rng(7).normal(size=(C, D))
    peer_block = gluonfr_loss.CenterLoss(classes=C, embedding_size=D, lamda=0.01,
                                         dtype="float64")
    peer_block.initialize()
    peer_block.cast("float64")
    peer_block.centers.set_data(nd.array(centers, dtype="float64"))
    peer = _per_sample_mean(peer_block, x @ weight.T, y, x)
    sq = ((x - centers[y]) ** 2).sum(axis=1)
    count = np.bincount(y, minlength=C)[y]
    ce = _ce(x @ weight.T, y)
    np.testing.assert_allclose(peer, ce + 0.005 * np.mean(sq / count), rtol=1e-12)
    ours, _ = _torch_ours("center", x, y, {"weight": weight, "centers": centers})
    np.testing.assert_allclose(ours, ce + 0.005 * np.mean(sq), rtol=1e-12)
    assert np.mean(sq) / np.mean(sq / count) > 1.5


def test_gluonfr_asoftmax_lambda_schedule_and_its_counter():
    """gluonfr's ASoftmax: lambda = max(5, 1500 / (1 + 0.1 it)) with a Python counter that
    stops once the block is hybridised; ours: max(5, 1000 / (1 + 0.12 t)), t advanced by
    ``step()``, which keeps counting in a hybridised Gluon loss."""
    x, y, weight = _batch(8)
    cos = _unit(x) @ _unit(weight).T
    plain = gluonfr_loss.ASoftmax(classes=C, m=4, s=1.0, dtype="float64")
    hybrid = gluonfr_loss.ASoftmax(classes=C, m=4, s=1.0, dtype="float64")
    hybrid.hybridize()
    for _ in range(3):
        plain(nd.array(cos, dtype="float64"), nd.array(y, dtype="float64"))
        hybrid(nd.array(cos, dtype="float64"), nd.array(y, dtype="float64"))
    assert plain.it == 3 and hybrid.it == 1  # the hybridised graph froze lambda at it = 1
    np.testing.assert_allclose(plain.lamb, 1500 / 1.3)
    ours = GL.build_loss("sphereface", num_classes=C, embedding_size=D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.initialize(force_reinit=False)
    ours.hybridize()
    xs, ys = nd.array(x), nd.array(y)
    for _ in range(3):
        ours(xs, ys)
        ours.step(xs, ys)
    assert int(GL.loss_state(ours)["iteration"][0]) == 3
    torch_ours = TL.build_loss("sphereface", num_classes=C, embedding_size=D)
    torch_ours.iteration.fill_(100)
    np.testing.assert_allclose(float(torch_ours.current_lambda()), 1000 / 13)  # 76.9
    assert abs(max(5.0, 1500 / (1 + 0.1 * 100)) - 136.36) < 0.01  # gluonfr's at t = 100


def test_gluonfr_triplet_agrees_on_batch_hard_triplets():
    """gluonfr's TripletLoss takes the triplets as given (no mining, no normalisation): fed
    our batch-hard choice on normalised rows it equals ours (where we agree)."""
    x, _, _ = _batch(9)
    labels = np.repeat(np.arange(4), 3)
    xn = _unit(x)
    dist = ((xn[:, None] - xn[None]) ** 2).sum(axis=2)
    same = labels[:, None] == labels[None]
    hardest_pos = np.where(same & ~np.eye(B, dtype=bool), dist, -1.0).argmax(axis=1)
    hardest_neg = np.where(~same, dist, 5.0).argmin(axis=1)
    peer = _per_sample_mean(gluonfr_loss.TripletLoss(margin=0.3), xn, xn[hardest_pos],
                            xn[hardest_neg])
    ours, _ = _torch_ours("triplet", x, labels, None, num_classes=4)
    np.testing.assert_allclose(peer, ours, rtol=1e-12)


# -- pytorch-metric-learning ----------------------------------------------------------------

def _pml_value(loss, x, y, weight_t=None, *extra):
    if weight_t is not None:
        with torch.no_grad():
            loss.W.copy_(torch.tensor(weight_t))
    xt = torch.tensor(x, requires_grad=True)
    value = loss(xt, torch.tensor(y), *extra)
    value.backward()
    return float(value.detach()), xt.grad.numpy()


def test_pml_margins_are_degrees():
    """PML's ArcFace margin is in degrees (default 28.6 = 0.49916 rad): margin=0.5 there is
    half a degree, i.e. our margin=radians(0.5), far from our margin=0.5."""
    x, y, weight = _batch(10)
    default, _ = _pml_value(pml_losses.ArcFaceLoss(num_classes=C, embedding_size=D).double(),
                            x, y, weight.T)
    ours_286, _ = _torch_ours("arcface", x, y, {"weight": weight}, margin=math.radians(28.6))
    np.testing.assert_allclose(default, ours_286, rtol=1e-12)
    half_degree, _ = _pml_value(
        pml_losses.ArcFaceLoss(num_classes=C, embedding_size=D, margin=0.5).double(),
        x, y, weight.T)
    ours_small, _ = _torch_ours("arcface", x, y, {"weight": weight}, margin=math.radians(0.5))
    np.testing.assert_allclose(half_degree, ours_small, rtol=1e-12)
    ours, _ = _torch_ours("arcface", x, y, {"weight": weight})
    assert ours - half_degree > 5.0


def test_pml_sphereface_has_no_lambda():
    """PML's SphereFaceLoss uses the target |x| psi(theta) itself (lambda = 0); ours blends
    (lambda cos + psi) / (1 + lambda) with lambda annealed from 1000 down to 5."""
    x, y, weight = _batch(11)
    peer, _ = _pml_value(pml_losses.SphereFaceLoss(num_classes=C, embedding_size=D,
                                                   margin=4).double(), x, y, weight.T)
    norm = np.linalg.norm(x, axis=1)
    cos = np.clip(_unit(x) @ _unit(weight).T, -1, 1)
    rows = np.arange(B)
    theta = np.arccos(cos[rows, y])
    k = np.floor(4 * theta / math.pi)
    psi = (-1.0) ** k * np.cos(4 * theta) - 2 * k

    def value(lam):
        logits = cos.copy()
        logits[rows, y] = (lam * cos[rows, y] + psi) / (1 + lam)
        return _ce(norm[:, None] * logits, y)

    np.testing.assert_allclose(peer, value(0.0), rtol=1e-10)
    for t, lam in ((0, 1000.0), (10**4, 5.0)):
        state = {"weight": weight, "iteration": np.array([t], dtype=np.int64)}
        ours, _ = _torch_ours("sphereface", x, y, state)
        np.testing.assert_allclose(ours, value(lam), rtol=1e-10)
        assert peer - ours > 1.0


def test_pml_subcenter_arcface_agrees():
    """PML's SubCenterArcFaceLoss (margin in degrees, W as D x (C K), class-major) equals ours."""
    x, y, _ = _batch(12)
    weight = np.random.default_rng(12).normal(size=(C * 3, D))
    peer = pml_losses.SubCenterArcFaceLoss(num_classes=C, embedding_size=D,
                                           margin=math.degrees(0.5), scale=64,
                                           sub_centers=3).double()
    pv, pdx = _pml_value(peer, x, y, weight.T)
    ours, dx = _torch_ours("subcenter_arcface", x, y, {"weight": weight})
    np.testing.assert_allclose(ours, pv, rtol=1e-12)
    np.testing.assert_allclose(dx, pdx, rtol=1e-9, atol=1e-13)


def test_pml_contrastive_is_unsquared_and_averages_non_zero_pairs():
    """PML's ContrastiveLoss: relu(d - 0) for positives and relu(1 - d) for negatives (no
    squares), each averaged over its non-zero pairs, then added; ours: the mean over all pairs
    of d^2 or max(0, 1 - d)^2."""
    x, _, _ = _batch(13)
    labels = np.repeat(np.arange(4), 3)
    peer, _ = _pml_value(pml_losses.ContrastiveLoss(), x, labels)
    a, p, same = _all_pairs(x, labels)
    d = np.sqrt(((a - p) ** 2).sum(axis=1))
    pos, neg = d[same == 1], np.maximum(1.0 - d[same == 0], 0.0)
    expected = pos[pos > 0].mean() + (neg[neg > 0].mean() if (neg > 0).any() else 0.0)
    np.testing.assert_allclose(peer, expected, rtol=1e-10)
    ours, _ = _torch_ours("contrastive", x, labels, None, num_classes=4)
    assert abs(peer - ours) > 0.5


def test_pml_triplet_defaults_differ_but_batch_hard_agrees():
    """PML's TripletMarginLoss defaults (margin 0.05, every triplet, unsquared distance, the mean
    over non-zero triplets) are another loss; with BatchHardMiner, squared distance, margin
    0.3 and MeanReducer it equals ours. With AvgNonZeroReducer it differs once an anchor has
    zero loss (here 3 of 12 anchors: 4/3 of ours)."""
    rng = np.random.default_rng(14)
    x = np.concatenate([np.tile([[1.0, 0, 0, 0, 0]], (3, 1)), np.tile([[0, 1.0, 0, 0, 0]], (3, 1)),
                        rng.normal(size=(6, D))]) + 0.01 * rng.normal(size=(B, D))
    labels = np.repeat(np.arange(4), 3)
    sq = pml_distances.LpDistance(power=2)
    miner = pml_miners.BatchHardMiner(distance=sq)
    xt, lt = torch.tensor(x), torch.tensor(labels)
    triplets = miner(xt, lt)
    mean_red, _ = _pml_value(pml_losses.TripletMarginLoss(
        margin=0.3, distance=sq, reducer=pml_reducers.MeanReducer()), x, labels, None, triplets)
    non_zero, _ = _pml_value(pml_losses.TripletMarginLoss(margin=0.3, distance=sq), x, labels,
                             None, triplets)
    default, _ = _pml_value(pml_losses.TripletMarginLoss(), x, labels)
    ours, _ = _torch_ours("triplet", x, labels, None, num_classes=4)
    np.testing.assert_allclose(mean_red, ours, rtol=1e-12)
    xn = _unit(x)
    dist = ((xn[:, None] - xn[None]) ** 2).sum(axis=2)
    same = labels[:, None] == labels[None]
    per_anchor = np.maximum(np.where(same, dist, -1.0).max(axis=1)
                            - np.where(~same, dist, 5.0).min(axis=1) + 0.3, 0.0)
    np.testing.assert_allclose(ours, per_anchor.mean(), rtol=1e-12)
    assert (per_anchor == 0).sum() == 3
    np.testing.assert_allclose(non_zero, per_anchor[per_anchor > 0].mean(), rtol=1e-12)
    assert abs(default - ours) > 0.1
