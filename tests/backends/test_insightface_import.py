"""InsightFace MXNet checkpoint -> our gluon and torch MobileFaceNet, and LFW pairs -> .bin.

The checkpoint is built here with MXNet's symbol API the way InsightFace's
``recognition/symbol/fmobilefacenet.py`` + ``symbol_utils.get_fc1(..., 'GDC')`` build it
(same node names, eps defaults, fixed-gamma fc1, in-graph input scaling), small (32 px,
few blocks) and randomly initialised, so CI needs neither ../shared nor a download.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
import torch

from bench.cli import main as cli_main
from bench.commands.import_model import build_from_exported, read_exported
from gluon_impl.insightface import MXNetReference, load_insightface
from gluon_impl.transfer import export_params
from pytorch_impl.backbones import build_backbone as build_torch
from pytorch_impl.transfer import import_params as import_torch


def _conv(data, num_filter, kernel=(1, 1), stride=(1, 1), pad=(0, 0), num_group=1, name="",
          suffix="", act=True):
    conv = mx.sym.Convolution(data=data, num_filter=num_filter, kernel=kernel,
                              num_group=num_group, stride=stride, pad=pad, no_bias=True,
                              name=f"{name}{suffix}_conv2d")
    bn = mx.sym.BatchNorm(data=conv, name=f"{name}{suffix}_batchnorm", fix_gamma=False,
                          momentum=0.9)
    if not act:
        return bn
    return mx.sym.LeakyReLU(data=bn, act_type="prelu", name=f"{name}{suffix}_relu")


def _dresidual(data, num_out, stride, num_group, name, suffix=""):
    conv = _conv(data, num_group, name=f"{name}{suffix}_conv_sep")
    conv_dw = _conv(conv, num_group, (3, 3), stride, (1, 1), num_group,
                    name=f"{name}{suffix}_conv_dw")
    return _conv(conv_dw, num_out, name=f"{name}{suffix}_conv_proj", act=False)


def _residual(data, num_block, num_out, num_group, name):
    identity = data
    for i in range(num_block):
        identity = _dresidual(identity, num_out, (1, 1), num_group, f"{name}_block", str(i)) \
            + identity
    return identity


def fmobilefacenet_symbol(blocks, emb_size, image_size):
    data = mx.sym.Variable("data")
    data = (data - 127.5) * 0.0078125
    body = _conv(data, 64, (3, 3), (2, 2), (1, 1), name="conv_1")
    if blocks[0] == 1:
        body = _conv(body, 64, (3, 3), (1, 1), (1, 1), 64, name="conv_2_dw")
    else:
        body = _residual(body, blocks[0], 64, 64, "res_2")
    body = _dresidual(body, 64, (2, 2), 128, "dconv_23")
    body = _residual(body, blocks[1], 64, 128, "res_3")
    body = _dresidual(body, 128, (2, 2), 256, "dconv_34")
    body = _residual(body, blocks[2], 128, 256, "res_4")
    body = _dresidual(body, 128, (2, 2), 512, "dconv_45")
    body = _residual(body, blocks[3], 128, 256, "res_5")
    body = _conv(body, 512, name="conv_6sep")
    k = image_size // 16
    body = _conv(body, 512, (k, k), num_group=512, name="conv_6dw7_7", act=False)
    # the published y1 graph names the FC weight fc1_weight (bias pre_fc1_bias)
    fc = mx.sym.FullyConnected(data=body, weight=mx.sym.Variable("fc1_weight"),
                               num_hidden=emb_size, name="pre_fc1")
    return mx.sym.BatchNorm(data=fc, fix_gamma=True, eps=2e-5, momentum=0.9, name="fc1")


def save_random_checkpoint(prefix, blocks=(1, 2, 2, 1), emb_size=16, image_size=32, seed=0):
    sym = fmobilefacenet_symbol(blocks, emb_size, image_size)
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, image_size, image_size))
    # weights ~ N(0, 1/fan_in) keep activations O(1) through the 30-odd layers
    args = {n: mx.nd.array(rng.normal(0, 1 / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 1), s))
            for n, s in zip(sym.list_arguments(), arg_shapes) if n != "data"}
    for n in args:  # gammas near 1, PReLU slopes in (0, 0.5)
        if n.endswith("_gamma"):
            args[n] = mx.nd.array(rng.uniform(0.5 if "relu" not in n else 0, 1.5 if "relu"
                                              not in n else 0.5, args[n].shape))
    args["fc1_gamma"] = mx.nd.array(rng.uniform(2, 3, args["fc1_gamma"].shape))  # fixed: unused
    aux = {n: mx.nd.array(rng.uniform(0.5, 2, s) if n.endswith("var") else rng.normal(0, .1, s))
           for n, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    mx.model.save_checkpoint(str(prefix), 0, sym, args, aux)
    return str(prefix)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "model")


def _pixels(n=6, size=32, seed=3):
    return np.random.RandomState(seed).randint(0, 256, (n, 3, size, size)).astype(np.float32)


def test_detects_configuration(checkpoint):
    model, name, kwargs = load_insightface(checkpoint)
    assert name == "mobilefacenet"
    assert kwargs == {"embedding_size": 16, "image_size": 32, "blocks": (1, 2, 2, 1),
                      "input_norm": True}
    assert model.raw_input


def test_gluon_and_torch_equal_mxnet_module(checkpoint):
    gluon_model, name, kwargs = load_insightface(checkpoint)
    torch_model = build_torch(name, **kwargs).eval()
    import_torch(torch_model, export_params(gluon_model))
    x = _pixels()
    ref = MXNetReference(checkpoint, batch_size=4)(x)  # two batches, the last one padded
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(gluon_model(mx.nd.array(x)).asnumpy(), ref, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(torch_model(torch.from_numpy(x)).numpy(), ref, atol=1e-5)


def test_res_2_variant_and_cli_roundtrip(tmp_path, capsys):
    prefix = save_random_checkpoint(tmp_path / "m", blocks=(2, 1, 1, 1), emb_size=8, seed=1)
    assert cli_main(["import-model", prefix, str(tmp_path / "out"), "--check-batch", "2"]) == 0
    assert "max |MXNet Module - torch|" in capsys.readouterr().out
    params, meta = read_exported(tmp_path / "out")
    assert meta["backbone_kwargs"]["blocks"] == [2, 1, 1, 1]
    torch_model = build_from_exported(params, meta, "torch")
    gluon_model = build_from_exported(params, meta, "gluon")
    x = _pixels(seed=5)
    ref = MXNetReference(prefix, batch_size=6)(x)
    with torch.no_grad():
        np.testing.assert_allclose(torch_model(torch.from_numpy(x)).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(gluon_model(mx.nd.array(x)).asnumpy(), ref, atol=1e-5)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-symbol.json"):
        load_insightface(str(tmp_path / "nothing"))


def test_wrong_architecture_is_an_error(tmp_path):
    data = mx.sym.Variable("data")
    sym = mx.sym.FullyConnected(mx.sym.Flatten(data), num_hidden=4, name="fc")
    mx.model.save_checkpoint(str(tmp_path / "other"), 0, sym,
                             {"fc_weight": mx.nd.zeros((4, 12)), "fc_bias": mx.nd.zeros(4)}, {})
    with pytest.raises(ValueError, match="unsupported architecture.*conv_1_conv2d"):
        load_insightface(str(tmp_path / "other"))
    prefix = save_random_checkpoint(tmp_path / "m")
    with pytest.raises(ValueError, match="is a 'mobilefacenet' graph, not 'iresnet50'"):
        load_insightface(prefix, backbone="iresnet50")


def test_unused_missing_and_mismatched_arrays_are_listed(tmp_path):
    prefix = save_random_checkpoint(tmp_path / "m")
    sym, args, aux = mx.model.load_checkpoint(prefix, 0)
    args["fc7_weight"] = mx.nd.zeros((10, 16))
    del aux["conv_1_batchnorm_moving_var"]
    args["conv_6sep_relu_gamma"] = mx.nd.zeros((7,))
    mx.model.save_checkpoint(prefix, 0, sym, args, aux)
    with pytest.raises(ValueError) as info:
        load_insightface(prefix)
    text = str(info.value)
    assert "unused arrays 1: fc7_weight" in text
    assert "conv_1_batchnorm_moving_var (for conv_1.bn.running_var) missing" in text
    assert "conv_6sep_relu_gamma: shape (7,), conv_6sep.prelu.weight needs (512,)" in text


def test_attribute_mismatch_is_an_error(tmp_path):
    prefix = str(tmp_path / "m")
    sym = fmobilefacenet_symbol((1, 2, 2, 1), 16, 32)
    sym = mx.sym.load_json(sym.tojson().replace('"eps": "2e-05"', '"eps": "0.001"'))
    save_random_checkpoint(prefix)  # params of the right shapes
    _, args, aux = mx.model.load_checkpoint(prefix, 0)
    mx.model.save_checkpoint(prefix, 0, sym, args, aux)
    with pytest.raises(ValueError, match=r"fc1\.eps = 0\.001, our fc1 has 2e-05"):
        load_insightface(prefix)


def _arcface_torch_keys(layers):
    """state_dict keys of arcface_torch's IResNet (iresnet.py), written from its module tree."""
    bn = ("weight", "bias", "running_mean", "running_var")
    keys = ["conv1.weight", *(f"bn1.{b}" for b in bn), "prelu.weight"]
    for i, count in enumerate(layers, start=1):
        for j in range(count):
            p = f"layer{i}.{j}"
            keys += [*(f"{p}.bn1.{b}" for b in bn), f"{p}.conv1.weight",
                     *(f"{p}.bn2.{b}" for b in bn), f"{p}.prelu.weight", f"{p}.conv2.weight",
                     *(f"{p}.bn3.{b}" for b in bn)]
            if j == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{b}" for b in bn)]
    return keys + [*(f"bn2.{b}" for b in bn), "fc.weight", "fc.bias",
                   *(f"features.{b}" for b in bn)]


def test_iresnet_keys_match_arcface_torch_and_load(tmp_path):
    from pytorch_impl.insightface import load_arcface_torch

    model = build_torch("iresnet18", embedding_size=8, image_size=32)
    state = model.state_dict()
    assert [k for k in state if not k.endswith("num_batches_tracked")] == \
        _arcface_torch_keys((2, 2, 2, 2))
    state = {f"module.{k}": v + 0.5 for k, v in state.items()}  # as saved from DDP
    torch.save(state, tmp_path / "backbone.pth")
    loaded = load_arcface_torch(str(tmp_path / "backbone.pth"), "iresnet18", 8, 32)
    assert torch.equal(loaded.fc.bias, state["module.fc.bias"])
    del state["module.fc.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="missing 1: fc.bias"):
        load_arcface_torch(str(tmp_path / "broken.pth"), "iresnet18", 8, 32)


def test_pairs_file_and_folder_to_bin_roundtrip(tmp_path):
    import cv2

    from common.binfile import decode_bin, load_bin
    from common.lfw import pairs_to_bin

    rng = np.random.RandomState(0)
    originals = {}
    for name, count in (("Ann_A", 2), ("Bob_B", 1), ("Cy_C", 2)):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(1, count + 1):
            path = tmp_path / "img" / name / f"{name}_{i:04d}.jpg"
            cv2.imwrite(str(path), rng.randint(0, 256, (112, 112, 3), np.uint8))
            originals[(name, i)] = path.read_bytes()
    (tmp_path / "pairs.txt").write_text("1 2\nAnn_A 1 2\nCy_C 2 1\nAnn_A 2 Bob_B 1\n"
                                        "Bob_B 1 Cy_C 1\n")
    assert pairs_to_bin(tmp_path / "img", tmp_path / "pairs.txt", tmp_path / "t.bin",
                        progress=False) == 4
    bins, issame = load_bin(tmp_path / "t.bin")
    order = [("Ann_A", 1), ("Ann_A", 2), ("Cy_C", 2), ("Cy_C", 1), ("Ann_A", 2), ("Bob_B", 1),
             ("Bob_B", 1), ("Cy_C", 1)]
    assert [bytes(b) for b in bins] == [originals[k] for k in order]  # original bytes, in order
    assert list(issame) == [True, True, False, False]
    images = decode_bin(tmp_path / "t.bin")
    assert images.shape == (8, 112, 112, 3)
    expected = cv2.cvtColor(cv2.imread(str(tmp_path / "img/Cy_C/Cy_C_0002.jpg")),
                            cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(images[2], expected)
    (tmp_path / "img/Bob_B/Bob_B_0001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="Bob_B_0001.jpg"):
        pairs_to_bin(tmp_path / "img", tmp_path / "pairs.txt", tmp_path / "u.bin", progress=False)


def test_eval_cli_all_backends_agree(tmp_path, capsys):
    import csv

    import cv2

    from common.binfile import write_bin

    prefix = save_random_checkpoint(tmp_path / "m")
    rng = np.random.RandomState(2)
    faces = [rng.randint(0, 256, (32, 32, 3), np.uint8) for _ in range(12)]
    for i, face in enumerate(faces):
        (tmp_path / "img").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), face)
    bins, issame = [], []
    for fold in range(10):  # per fold one same pair (noisy copy) and one different pair
        a, b = faces[fold], faces[fold + 1]
        noisy = np.clip(a.astype(int) + rng.randint(-8, 9, a.shape), 0, 255).astype(np.uint8)
        for img in (a, noisy, a, b):
            bins.append(cv2.imencode(".png", img)[1].tobytes())
        issame += [True, False]
    write_bin(tmp_path / "t.bin", bins, issame)
    argv = ["eval", str(tmp_path / "t.bin"), "--mxnet", prefix, "--batch-size", "8",
            "--compare-images", str(tmp_path / "img"), "--out", str(tmp_path / "out"),
            "--no-progress"]
    assert cli_main(argv) == 0
    with open(tmp_path / "out" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["backend"] for r in rows] == ["mxnet", "gluon", "torch"]
    for key in ("accuracy_mean", "val_mean", "eer", "xnorm"):
        values = [float(r[key]) for r in rows]
        assert max(values) - min(values) <= 1e-5 * max(1.0, abs(values[0])), key
    assert all(r["flip"] == "True" for r in rows)
    with open(tmp_path / "out" / "embedding_diff.csv") as f:
        diffs = list(csv.DictReader(f))
    assert [int(d["images"]) for d in diffs] == [12, 12, 12]
    assert max(float(d["max_abs_diff_normalised"]) for d in diffs) <= 1e-5
    assert (tmp_path / "out" / "roc.png").stat().st_size > 0
    assert "| torch |" in (tmp_path / "out" / "results.md").read_text()
