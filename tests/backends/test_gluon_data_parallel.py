"""Gluon data parallelism: two CPU contexts + kvstore give the single-context SGD steps."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_impl.data_parallel import DataParallelTrainer, parse_contexts
from gluon_impl.losses import build_loss
from gluon_impl.losses.base import load_loss_state, loss_state
from gluon_impl.train import Trainer

C, D = 7, 5


def _model(name: str, seed: int = 4):
    mx.random.seed(seed)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Flatten(), gluon.nn.Dense(D, in_units=12))
    net.initialize(mx.init.Normal(0.5))
    loss = build_loss(name, num_classes=C, embedding_size=D)  # initialised by build_loss
    return net, loss


def _copy(src, dst):
    for (_, a), (_, b) in zip(sorted(src[0]._collect_params_with_prefix().items()),
                              sorted(dst[0]._collect_params_with_prefix().items()), strict=True):
        b.set_data(a.data())
    load_loss_state(dst[1], loss_state(src[1]))


@pytest.mark.parametrize("name,kvstore", [("arcface", "device"), ("arcface+center", "local"),
                                          ("sphereface", "local")])
def test_two_contexts_equal_one_context(name, kvstore):
    a, b = _model(name), _model(name, seed=9)
    _copy(a, b)
    single = Trainer(*a, hybridize=False)
    multi = DataParallelTrainer(*b, contexts=[mx.cpu(0), mx.cpu(1)], kvstore=kvstore)
    rng = np.random.default_rng(0)
    for lr in (0.2, 0.1, 0.05):
        images = rng.normal(size=(9, 3, 2, 2)).astype(np.float32)  # 9 rows: uneven split
        labels = rng.integers(0, C, size=9)
        single.set_lr(lr)
        multi.set_lr(lr)
        sa = single.train_step(images, labels)
        sb = multi.train_step(images, labels)
        assert sb.loss == pytest.approx(sa.loss, rel=1e-5)
        assert sb.correct == sa.correct
    want, got = single.state_arrays(), multi.state_arrays()
    assert sorted(want) == sorted(got)
    assert any(k.startswith("momentum/") for k in got)
    for key in want:  # float32 sums in another order: tolerance scaled to the magnitude
        atol = 1e-5 * max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=atol, err_msg=key)
    # every context holds the same copy after the update
    for _, p in multi.named_params:
        np.testing.assert_array_equal(p.data(mx.cpu(0)).asnumpy(), p.data(mx.cpu(1)).asnumpy())
    np.testing.assert_allclose(multi.embed(images), single.embed(images), rtol=1e-4, atol=1e-6)


def test_checkpoint_round_trip_restores_every_context():
    a, b = _model("arcface+center"), _model("arcface+center", seed=2)
    t = DataParallelTrainer(*a, contexts=[mx.cpu(0), mx.cpu(1)], kvstore="local")
    t.set_lr(0.1)
    t.train_step(np.ones((4, 3, 2, 2), np.float32), np.array([0, 1, 1, 3]))
    u = DataParallelTrainer(*b, contexts=[mx.cpu(0), mx.cpu(1)], kvstore="local")
    u.load_state_arrays(t.state_arrays())
    for key, value in t.state_arrays().items():
        np.testing.assert_array_equal(u.state_arrays()[key], value, err_msg=key)
    centers = [p for k, p in u.loss._collect_params_with_prefix().items() if "centers" in k][0]
    np.testing.assert_array_equal(centers.data(mx.cpu(1)).asnumpy(),
                                  t.state_arrays()["lossstate/centers"])


def test_bad_arguments_name_the_argument():
    net, loss = _model("arcface")
    with pytest.raises(ValueError, match="kvstore must be one of"):
        DataParallelTrainer(net, loss, [mx.cpu(0)], kvstore="nccl2")
    with pytest.raises(ValueError, match="distinct contexts"):
        DataParallelTrainer(net, loss, [mx.cpu(0), mx.cpu(0)])
    with pytest.raises(ValueError, match="contexts must look like"):
        parse_contexts("tpu:0")
    assert parse_contexts("gpu:0,3") == [mx.gpu(0), mx.gpu(3)]
