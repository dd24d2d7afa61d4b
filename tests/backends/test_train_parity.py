"""Identical start, identical data: the PyTorch and Gluon training steps agree for every loss.

Both trainers are built the way the harness builds them (weights from the PyTorch modules under
``manual_seed``, copied into Gluon by ``transfer``/``load_loss_state``; the Gluon backbone
hybridised with static_alloc) and fed the same ``EpochSampler`` batches with a warm-up LR that
changes every step (which is where MXNet's own SGD would depart from PyTorch's). The per-step
losses must agree to 1e-4 (relative to max(1, |loss|)) over the first steps, and the embeddings
of the updated networks (inference mode, so BatchNorm running statistics count too) to 1e-4 of
their scale.

Over a whole run the two curves drift apart; measured (20 identities x 16 images, 32 px,
smallcnn width 8, batch 32, lr 0.1 cosine, 10 steps/epoch, Gluon imperative so that only
rounding differs): max relative per-step loss difference in the first 5 steps 4e-7 (softmax,
centre, triplet) and 3e-4 (arcface, s=64); in epoch 1: 2e-6 (centre) to 2e-2 (arcface); by epoch
4 up to 0.1-0.2 for single batches. Why it grows: the backends round differently (oneDNN vs
ATen summation order, ~1e-7 relative per op); SGD with momentum on a non-convex loss amplifies
any perturbation step after step, a large logit scale (s=64) multiplies the sensitivity, and
discrete choices (ArcFace's fallback branch, batch-hard mining, argmax ties) flip once the
weights differ slightly; from then on the two runs are different samples of the same training
and agree statistically (final accuracies within the fold std), not numerically. Hence the
1e-4 test covers the first few steps only.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.run.cell import build_trainer, initial_state
from bench.run.config import HarnessConfig
from bench.run.harness import known_losses
from common.images import make_batch
from common.sampler import EpochSampler
from common.schedule import build_schedule

CLASSES, PER_CLASS, SIZE, STEPS = 6, 6, 16, 3
CFG = HarnessConfig(data="unused", embedding_size=16, image_size=SIZE, batch_size=12, pk=3,
                    backbone="smallcnn", backbone_kwargs={"width": 4})


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (CLASSES * PER_CLASS, SIZE, SIZE, 3), dtype=np.uint8)
    # PER_CLASS is a multiple of pk: P x K batches never repeat an image (exact distance ties
    # would make batch-hard mining pick an arbitrary one of the tied pairs)
    return images, np.repeat(np.arange(CLASSES), PER_CLASS)


def train_both(loss_name, images, labels, steps=STEPS, lr=0.02):
    params, lstate = initial_state(CFG, loss_name, CLASSES)
    trainers = {b: build_trainer(b, CFG, loss_name, CLASSES, params, lstate)
                for b in ("pytorch", "gluon")}
    pk = CFG.pk if trainers["pytorch"].loss.requires_pk_batches else None
    sampler = EpochSampler(labels, CFG.batch_size, CFG.seed, pk=pk)
    schedule = build_schedule("cosine", lr, epochs=2, steps_per_epoch=len(sampler),
                              warmup_epochs=1)
    losses = {b: [] for b in trainers}
    batches = [b for e in range(2) for b in sampler.batches(e)][:steps]
    for step, (idx, flips) in enumerate(batches):
        x = make_batch(images[idx], flips)
        for b, t in trainers.items():
            t.set_lr(schedule(step))
            losses[b].append(t.train_step(x, labels[idx]).loss)
    return trainers, losses


@pytest.mark.parametrize("loss_name", known_losses())
def test_first_steps_agree(loss_name, data):
    images, labels = data
    trainers, losses = train_both(loss_name, images, labels)
    a, b = np.array(losses["pytorch"]), np.array(losses["gluon"])
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    assert len(set(a.tolist())) > 1, "the loss did not change: no training happened"
    tol = 1e-4 * np.maximum(1.0, np.abs(a))
    assert np.all(np.abs(a - b) <= tol), f"per-step losses differ: {a} vs {b}"
    x = make_batch(images[:12])
    ea, eb = trainers["pytorch"].embed(x), trainers["gluon"].embed(x)
    scale = max(1.0, float(np.abs(ea).max()))
    # Sub-center ArcFace routes each class's gradient to its arg-max sub-centre; near-ties among
    # the K random sub-centres flip on float32 rounding, so its weights (not its losses) may part
    # by ~1e-3 within 3 steps: a discrete choice, like ArcFace's fallback branch later on.
    tol = 1e-2 if "subcenter" in loss_name else 1e-4
    assert np.abs(ea - eb).max() <= tol * scale


def test_weight_decay_skips_vectors_in_both_backends(data):
    """BN/bias/PReLU vectors get no weight decay, kernels and class weights do, in both."""
    images, labels = data
    trainers, _ = train_both("softmax", images, labels, steps=1)
    torch_groups = trainers["pytorch"].optimizer.param_groups
    assert {g["weight_decay"] for g in torch_groups} == {CFG.weight_decay, 0.0}
    assert all(p.ndim > 1 for p in torch_groups[0]["params"])
    assert all(p.ndim <= 1 for p in torch_groups[1]["params"])
    gl = trainers["gluon"]
    decayed = sorted(k for k, p in gl.named_params if len(p.shape) > 1)
    torch_decayed = sorted(k for k, p in trainers["pytorch"].named_params if p.ndim > 1)
    assert decayed == torch_decayed and "loss.weight" in decayed


def test_decay_all_decays_every_parameter_and_the_backends_still_agree(data):
    """``decay_all`` (arcface_torch's rule): BatchNorm, bias and PReLU vectors decay too, in
    both backends, the weights after three steps still agree, and they differ from the
    default rule's (the option does something)."""
    import dataclasses

    images, labels = data
    global CFG
    default_cfg = CFG
    try:
        CFG = dataclasses.replace(default_cfg, decay_all=True, weight_decay=0.05)
        trainers, losses = train_both("softmax", images, labels)
        CFG = dataclasses.replace(default_cfg, weight_decay=0.05)
        base, _ = train_both("softmax", images, labels)
    finally:
        CFG = default_cfg
    groups = trainers["pytorch"].optimizer.param_groups
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.05
    x = make_batch(images[:12])
    ea, eb = trainers["pytorch"].embed(x), trainers["gluon"].embed(x)
    assert np.abs(ea - eb).max() <= 1e-4 * max(1.0, float(np.abs(ea).max()))
    assert np.abs(ea - base["pytorch"].embed(x)).max() > 1e-4
    from common import backends

    exported = {b: backends.load(b).transfer.export_params(t.backbone)
                for b, t in trainers.items()}
    vectors = [k for k, v in exported["pytorch"].items() if v.ndim == 1
               and not k.endswith(("running_mean", "running_var"))]
    assert any(k.endswith("bn.weight") for k in vectors)
    for k in vectors:
        assert np.abs(exported["pytorch"][k] - exported["gluon"][k]).max() <= 1e-4, k


def test_sgd_rule_is_torch_s_in_both_backends_when_lr_changes():
    """The trainers alone (a linear backbone, no backbone code involved): PyTorch's SGD and the
    Gluon update give the same weights after steps with a different LR each (MXNet's own
    ``sgd`` would not: it keeps lr * g inside the momentum buffer)."""
    import mxnet as mx
    import torch

    import gluon_impl.losses as glosses
    import pytorch_impl.losses as tlosses
    from gluon_impl.train import Trainer as GluonTrainer
    from pytorch_impl.train import Trainer as TorchTrainer

    rng = np.random.default_rng(3)
    w = rng.normal(size=(8, 3 * 4 * 4)).astype(np.float32) * 0.1
    bias = rng.normal(size=8).astype(np.float32)
    tnet = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8))
    with torch.no_grad():
        tnet[1].weight.copy_(torch.from_numpy(w))
        tnet[1].bias.copy_(torch.from_numpy(bias))
    gnet = mx.gluon.nn.Dense(8, in_units=48)
    gnet.initialize()
    gnet.weight.set_data(mx.nd.array(w))
    gnet.bias.set_data(mx.nd.array(bias))
    tloss = tlosses.build_loss("normface", num_classes=4, embedding_size=8)
    gloss = glosses.build_loss("normface", num_classes=4, embedding_size=8)
    glosses.load_loss_state(gloss, tlosses.loss_state(tloss))
    tt, gt = TorchTrainer(tnet, tloss), GluonTrainer(gnet, gloss)
    x = rng.normal(size=(6, 3, 4, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    for lr in (0.01, 0.05, 0.2, 0.02):
        tt.set_lr(lr)
        gt.set_lr(lr)
        tt.train_step(x, y)
        gt.train_step(x, y)
    np.testing.assert_allclose(gnet.weight.data().asnumpy(), tnet[1].weight.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gnet.bias.data().asnumpy(), tnet[1].bias.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gloss.weight.data().asnumpy(), tloss.weight.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    assert not np.allclose(tnet[1].weight.detach().numpy(), w)  # it did train


def test_gluon_sgd_step_is_torch_s_float32_rule_bit_for_bit():
    """``gluon_impl.train.torch_sgd_step`` (three in-place ``sgd_update`` calls) against the
    rule written out in float32 NumPy, g' = g + wd w, buf' = momentum buf + g', w' = w - lr buf':
    equal bit for bit at the suite's momentum 0.9, with and without weight decay, over LRs of a
    warm-up/cosine schedule; a first step from buf = 0 leaves buf = g' (torch's clone)."""
    from mxnet import nd

    from gluon_impl.train import torch_sgd_step

    rng = np.random.default_rng(11)
    f32 = np.float32
    for wd in (5e-4, 0.0):
        w = rng.standard_normal(4099).astype(f32)
        buf = np.zeros_like(w)
        nw, nbuf = nd.array(w), nd.array(buf)
        for step, lr in enumerate((0.0, 0.02, 0.1, 0.0731, 1e-5)):
            g = rng.standard_normal(w.shape).astype(f32)
            torch_sgd_step(nw, nd.array(g), nbuf, lr, 0.9, wd)
            g = g + f32(wd) * w if wd else g
            buf = f32(0.9) * buf + g if step else g
            w = w - f32(lr) * buf
            np.testing.assert_array_equal(nbuf.asnumpy(), buf)
            np.testing.assert_array_equal(nw.asnumpy(), w)
