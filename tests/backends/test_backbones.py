"""Backbone registries of both backends: same names, signatures, shapes and argument errors."""

from __future__ import annotations

import inspect

import mxnet as mx
import numpy as np
import pytest
import torch
from mxnet import autograd

import gluon_impl.backbones as gb
import pytorch_impl.backbones as tb
from gluon_impl.backbones.layers import BatchNorm1d as GluonBN1d
from gluon_impl.backbones.layers import BatchNorm2d as GluonBN
from pytorch_impl.backbones.layers import BatchNorm1d as TorchBN1d
from pytorch_impl.backbones.layers import BatchNorm2d as TorchBN


def test_same_registry_in_both_backends():
    assert tb.list_backbones() == gb.list_backbones()
    assert {"smallcnn", "mobilefacenet", "iresnet18", "iresnet50", "iresnet100"} <= set(
        tb.list_backbones()
    )


@pytest.mark.parametrize("name", tb.list_backbones())
def test_same_signature_in_both_backends(name):
    t_sig = inspect.signature(tb.registry.BACKBONES.get(name))
    g_sig = inspect.signature(gb.registry.BACKBONES.get(name))
    assert str(t_sig) == str(g_sig)


def test_unknown_name_lists_known_ones():
    messages = []
    for backend in (tb, gb):
        with pytest.raises(ValueError, match="unknown backbone 'resnet9'") as info:
            backend.build_backbone("resnet9")
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert all(name in messages[0] for name in tb.list_backbones())


def test_registering_a_name_twice_is_an_error():
    for backend in (tb, gb):
        with pytest.raises(ValueError, match="already registered"):
            backend.register_backbone("smallcnn")(object)


@pytest.mark.parametrize(
    "name, kwargs, pattern",
    [
        ("smallcnn", {"image_size": 50}, "image_size must be a positive multiple of 16, got 50"),
        ("smallcnn", {"embedding_size": 0}, "embedding_size must be a positive integer, got 0"),
        ("smallcnn", {"width": 0}, "width must be a positive integer, got 0"),
        ("smallcnn", {"bn_mom": 1.0}, r"bn_mom must be in \[0, 1\)"),
        ("mobilefacenet", {"blocks": (1, 2, 3)}, "blocks must be 4 positive integers"),
        ("iresnet18", {"dropout": 1.5}, r"dropout must be in \[0, 1\), got 1.5"),
    ],
)
def test_bad_arguments_raise_the_same_error(name, kwargs, pattern):
    messages = []
    for backend in (tb, gb):
        with pytest.raises(ValueError, match=pattern) as info:
            backend.build_backbone(name, **kwargs)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("name", ["smallcnn", "mobilefacenet", "iresnet18"])
@pytest.mark.parametrize("image_size", [32, 48])
def test_output_shape(name, image_size):
    x = np.zeros((2, 3, image_size, image_size), np.float32)
    t = tb.build_backbone(name, embedding_size=24, image_size=image_size).eval()
    g = gb.build_backbone(name, embedding_size=24, image_size=image_size)
    assert tuple(t(torch.from_numpy(x)).shape) == (2, 24)
    assert g(mx.nd.array(x)).shape == (2, 24)
    assert t.raw_input == g.raw_input == (name == "mobilefacenet")


def test_mobilefacenet_normalises_inside_with_insightface_constants():
    t = tb.build_backbone("mobilefacenet", embedding_size=8, image_size=32).eval()
    plain = tb.build_backbone("mobilefacenet", embedding_size=8, image_size=32,
                              input_norm=False).eval()
    plain.load_state_dict(t.state_dict())
    raw = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        assert torch.allclose(t(raw), plain((raw - 127.5) / 128), atol=1e-6)


def _torch_bn_steps(x_steps, bn):
    for x in x_steps:
        bn(torch.from_numpy(x)).sum().backward()
    return bn.running_mean.numpy(), bn.running_var.numpy()


def _gluon_bn_steps(x_steps, bn):
    for x in x_steps:
        with autograd.record():
            y = bn(mx.nd.array(x))
        y.backward()  # MXNet updates running statistics in the backward pass
    return bn.running_mean.data().asnumpy(), bn.running_var.data().asnumpy()


def test_batchnorm_running_stats_follow_mxnet_rule_in_both_backends():
    rng = np.random.RandomState(0)
    steps = [rng.normal(2.0, 3.0, (4, 3, 5, 5)).astype(np.float32) for _ in range(3)]
    mean, var = np.zeros(3), np.ones(3)
    for x in steps:  # MXNet: biased batch variance, decay bn_mom
        mean = 0.9 * mean + 0.1 * x.mean(axis=(0, 2, 3))
        var = 0.9 * var + 0.1 * x.var(axis=(0, 2, 3))
    torch_bn = TorchBN(3, eps=2e-5, bn_mom=0.9).train()
    gluon_bn = GluonBN(3, eps=2e-5, bn_mom=0.9)
    gluon_bn.initialize()
    for got_mean, got_var in (_torch_bn_steps(steps, torch_bn), _gluon_bn_steps(steps, gluon_bn)):
        np.testing.assert_allclose(got_mean, mean, rtol=1e-5)
        np.testing.assert_allclose(got_var, var, rtol=1e-5)
    # torch's own rule (unbiased) would differ by the factor n/(n-1) = 100/99: make sure it shows
    assert not np.allclose(var, 0.9 * 0.9 * 0.9 + sum(
        0.1 * 0.9 ** (2 - i) * x.var(axis=(0, 2, 3), ddof=1) for i, x in enumerate(steps)
    ), rtol=1e-4)


def test_fixed_gamma_ignores_the_stored_gamma():
    x = np.random.RandomState(1).normal(size=(6, 4)).astype(np.float32)
    tbn = TorchBN1d(4, fix_gamma=True).eval()
    assert not tbn.weight.requires_grad
    gbn = GluonBN1d(4, fix_gamma=True)
    gbn.initialize()
    with torch.no_grad():
        tbn.weight.fill_(3.0)
        tbn.running_var.fill_(4.0)
    gbn.gamma.set_data(mx.nd.full((4,), 3.0))
    gbn.running_var.set_data(mx.nd.full((4,), 4.0))
    expected = x / np.sqrt(4.0 + 2e-5)
    np.testing.assert_allclose(tbn(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(gbn(mx.nd.array(x)).asnumpy(), expected, rtol=1e-6)
