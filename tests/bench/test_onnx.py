"""ONNX: ``bench export --onnx`` through both frameworks' exporters, ``bench eval`` with
onnxruntime (issue 25, part 4).

Tiny random models (a SmallCNN and a MobileFaceNet with random BatchNorm statistics and
gammas, the fixed gamma of the embedding BN included, and an InsightFace-layout MXNet
checkpoint) are exported to ONNX from PyTorch (``torch.onnx.export``) and from MXNet
(``mx.onnx``'s converter, on our Gluon model and on the checkpoint as published); onnxruntime
must give the L2-normalised embeddings of torch, Gluon and MXNet's Module to ``TOL``, the same
verification metrics on a tiny .bin, and a one-line error naming the file for an .onnx that is
not an embedding model. Measured (SmallCNN, MobileFaceNet, IResNet-18 at 32 px, seeds 0-3):
ONNX vs torch or Gluon at most 3.6e-6, torch vs Gluon itself up to 2.7e-6: float32 rounding,
which the embedding BatchNorm's 1/sqrt(var) of these random networks magnifies.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from datagen import face_image
from onnx import TensorProto, helper

from bench.cli import main
from bench.commands.import_model import build_from_exported, read_exported, write_exported
from bench.run import onnx_model
from bench.run.onnx_model import OnnxEmbedder
from common.binfile import write_bin
from common.images import encode_jpeg
from common.verification import to_network_input
from pytorch_impl.backbones import build_backbone
from pytorch_impl.transfer import export_params

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32
TOL = 1e-5  # max abs difference of L2-normalised embeddings, ONNX vs torch / gluon / Module
METRICS = ("accuracy_mean", "accuracy_std", "val_mean", "far_mean", "eer", "auc", "xnorm",
           "threshold")


def _normalised(e):
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _diff(a, b) -> float:
    return float(np.abs(_normalised(np.asarray(a)) - _normalised(np.asarray(b))).max())


def _faces():
    return np.stack([face_image(i, j, (SIZE, SIZE)) for i in range(6) for j in range(4)])


def _randomise_bn(model, x, seed=0):
    """Random BN gammas and betas, the fixed gammas too (torch and MXNet ignore them, MXNet's
    ONNX converter would not); running statistics those of the batch ``x`` (the embeddings of
    a random network are otherwise nearly constant, and the embedding BN's 1/sqrt(var) turns
    float32 rounding into differences of 1e-5)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.momentum = 1.0  # running statistics := this batch's
        model.train()
        model(torch.from_numpy(x))
        model.eval()
        for m in bns:
            m.momentum = 0.1


def _bin(path: Path, faces) -> Path:
    images = {(i, j): encode_jpeg(faces[4 * i + j], 90) for i in range(6) for j in range(4)}
    bins, issame = [], []
    for k in range(20):  # 10 same pairs, 10 different ones, spread over the 10 folds
        a = k % 6
        if k % 2:
            bins += [images[(a, 0)], images[(a, 1 + k % 3)]]
        else:
            bins += [images[(a, k % 4)], images[((a + 1) % 6, (k + 1) % 4)]]
        issame.append(bool(k % 2))
    write_bin(path, bins, issame)
    return path


@pytest.fixture(scope="module")
def smallcnn(tmp_path_factory):
    """A SmallCNN folder with its ONNX files (bench export), a .bin of its size."""
    root = tmp_path_factory.mktemp("onnx_smallcnn")
    torch.manual_seed(0)
    model = build_backbone("smallcnn", embedding_size=8, image_size=SIZE, width=4)
    _randomise_bn(model, to_network_input(_faces()))
    write_exported(root / "model", export_params(model),
                   {"backbone": "smallcnn", "embedding_size": 8, "image_size": SIZE,
                    "backend": "torch", "backbone_kwargs": {"width": 4}, "raw_input": False})
    assert main(["export", str(root / "model"), "--onnx"]) == 0
    _bin(root / "t.bin", _faces())
    return root


def _models(folder):
    params, meta = read_exported(folder)
    return build_from_exported(params, meta, "torch"), build_from_exported(params, meta, "gluon")


def test_export_writes_both_files_with_their_description(smallcnn):
    folder = smallcnn / "model"
    meta = json.loads((folder / "onnx.json").read_text())
    assert list(meta["files"]) == ["model.torch.onnx", "model.mxnet.onnx"]
    assert meta["input"] == {"name": "data", "shape": ["N", 3, SIZE, SIZE], "dtype": "float32",
                             "layout": "NCHW", "channels": "RGB",
                             "normalize": "(x/255-0.5)/0.5", "raw_input": False}
    assert meta["output"]["shape"] == ["N", 8] and meta["output"]["normalised"] is False
    assert {"torch", "mxnet", "onnx", "onnxruntime", "numpy"} <= set(meta["versions"])
    for name, entry in meta["files"].items():
        data = (folder / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["opset"] == onnx_model.DEFAULT_OPSET and entry["check"][
            "max_abs_diff_normalised"] <= TOL
        graph = onnx.load_from_string(data).graph
        assert [i.name for i in graph.input] == ["data"]  # no initializer among the inputs
        assert [o.name for o in graph.output] == ["embedding"]
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    # the fixed gamma of the embedding BN (random here) would change MXNet's ONNX output
    assert any("fixed-gamma" in f for f in meta["files"]["model.mxnet.onnx"]["fixes"])
    assert meta["files"]["model.torch.onnx"]["fixes"] == []


def test_onnx_embeddings_equal_torch_and_gluon(smallcnn):
    folder = smallcnn / "model"
    torch_model, gluon_model = _models(folder)
    x = to_network_input(np.concatenate([_faces(), _faces()[:, ::-1]]))
    with torch.no_grad():
        want_torch = torch_model(torch.from_numpy(x)).numpy()
    want_gluon = gluon_model(mx.nd.array(x)).asnumpy()
    assert _diff(want_torch, want_gluon) <= TOL
    for name in ("model.torch.onnx", "model.mxnet.onnx"):
        got = OnnxEmbedder(folder / name, name, image_size=SIZE, embedding_size=8)(x)
        assert got.shape == (48, 8)
        assert _diff(got, want_torch) <= TOL, name
        assert _diff(got, want_gluon) <= TOL, name


def test_mobilefacenet_raw_input_both_exporters(tmp_path):
    """MobileFaceNet normalises inside its graph (raw pixels in); exported with --out."""
    torch.manual_seed(1)
    model = build_backbone("mobilefacenet", embedding_size=16, image_size=SIZE,
                           blocks=(1, 1, 1, 1))
    _randomise_bn(model, np.moveaxis(_faces(), 3, 1).astype(np.float32), seed=1)
    write_exported(tmp_path / "model", export_params(model),
                   {"backbone": "mobilefacenet", "embedding_size": 16, "image_size": SIZE,
                    "backend": "torch", "backbone_kwargs": {"blocks": [1, 1, 1, 1]},
                    "raw_input": True})
    record = onnx_model.export(tmp_path / "model", out=tmp_path / "onnx", log=lambda s: None)
    assert record["input"]["raw_input"] is True and "raw RGB" in record["input"]["normalize"]
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [
        "model.mxnet.onnx", "model.torch.onnx", "onnx.json"]
    assert not list((tmp_path / "model").glob("*.onnx"))  # --out: the model folder untouched
    torch_model, gluon_model = _models(tmp_path / "model")
    x = np.random.RandomState(0).randint(0, 256, (6, 3, SIZE, SIZE)).astype(np.float32)
    with torch.no_grad():
        want = torch_model(torch.from_numpy(x)).numpy()
    assert _diff(gluon_model(mx.nd.array(x)).asnumpy(), want) <= TOL
    for name in ("model.torch.onnx", "model.mxnet.onnx"):
        got = OnnxEmbedder(tmp_path / "onnx" / name, name, SIZE, 16)(x)
        assert _diff(got, want) <= TOL, name
    # onnx.json beside the files says how to feed them: eval --onnx alone uses raw pixels
    assert onnx_model.onnx_meta_for(tmp_path / "onnx" / "model.torch.onnx")["raw_input"] is True


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_onnx_backend_gives_torch_accuracy(smallcnn, tmp_path, capsys):
    folder = smallcnn / "model"
    argv = ["eval", str(smallcnn / "t.bin"), "--model", str(folder), "--batch-size", "8",
            "--compare-images", str(tmp_path / "img"), "--out", str(tmp_path / "all"),
            "--no-progress"]
    (tmp_path / "img").mkdir()
    for i, face in enumerate(_faces()[:6]):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(encode_jpeg(face, 95))
    assert main(argv) == 0
    rows = _rows(tmp_path / "all" / "metrics.csv")
    assert [r["backend"] for r in rows] == ["gluon", "torch", "onnx-torch", "onnx-mxnet"]
    torch_row = rows[1]
    assert 0.6 <= float(torch_row["accuracy_mean"]) < 1.0  # embeddings that tell faces apart
    for r in rows:
        assert r["accuracy_mean"] == torch_row["accuracy_mean"], r["backend"]
        for key in METRICS:
            assert abs(float(r[key]) - float(torch_row[key])) <= 1e-5, (r["backend"], key)
    matrix = _rows(tmp_path / "all" / "embedding_diff_matrix.csv")
    assert [m["backend"] for m in matrix] == [r["backend"] for r in rows]
    assert max(float(m[b]) for m in matrix for b in ("gluon", "torch", "onnx-torch",
                                                    "onnx-mxnet")) <= TOL
    assert "| onnx-mxnet |" in (tmp_path / "all" / "results.md").read_text()
    # --onnx alone: the file's onnx.json gives the input; the same accuracy as torch
    capsys.readouterr()
    assert main(["eval", str(smallcnn / "t.bin"), "--onnx", str(folder / "model.torch.onnx"),
                 "--batch-size", "8", "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    (row,) = _rows(tmp_path / "one" / "metrics.csv")
    assert row["backend"] == "onnx-torch" and row["accuracy_mean"] == torch_row["accuracy_mean"]
    # a bare .onnx (no json beside it): size from the graph, the bench's normalisation
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "mine.onnx").write_bytes((folder / "model.mxnet.onnx").read_bytes())
    assert main(["eval", str(smallcnn / "t.bin"), "--onnx", str(tmp_path / "bare"),
                 "--batch-size", "8", "--out", str(tmp_path / "bare_out"), "--no-progress"]) == 0
    (row,) = _rows(tmp_path / "bare_out" / "metrics.csv")
    assert row["backend"] == "onnx-mine" and row["accuracy_mean"] == torch_row["accuracy_mean"]


def test_checkpoint_export_fixes_what_mxnets_converter_gets_wrong(tmp_path, capsys):
    """An InsightFace-layout checkpoint (FullyConnected saved without 'flatten', per-channel
    PReLU, a fixed-gamma fc1 with gamma 2..3): exported as is, onnxruntime refuses it or
    gives other embeddings; ``--from checkpoint`` equals MXNet's own Module."""
    from backends.test_insightface_import import save_random_checkpoint

    from gluon_impl.insightface import MXNetReference

    (tmp_path / "ckpt").mkdir()
    prefix = save_random_checkpoint(tmp_path / "ckpt" / "model", blocks=(1, 1, 1, 1),
                                    image_size=SIZE)
    x = np.random.RandomState(0).randint(0, 256, (5, 3, SIZE, SIZE)).astype(np.float32)
    want = MXNetReference(prefix, 0, batch_size=5)(x)
    sym, arg, aux = mx.model.load_checkpoint(prefix, 0)
    naive = tmp_path / "naive.onnx"
    with warnings.catch_warnings():  # the converter's own use of the deprecated onnx.mapping
        warnings.simplefilter("ignore", DeprecationWarning)
        mx.onnx.export_model(sym, {**arg, **aux}, [(1, 3, SIZE, SIZE)], np.float32, str(naive))
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(naive), options, providers=["CPUExecutionProvider"])
        bad = _diff(session.run(None, {"data": x[:1]})[0], want[:1]) > 1e-3
    except Exception:  # onnxruntime's own error classes: the model is refused
        bad = True
    assert bad, "MXNet's converter got this checkpoint right: the fixes may be obsolete"

    assert main(["import-model", prefix, str(tmp_path / "y"), "--check-batch", "0"]) == 0
    assert main(["export", str(tmp_path / "y"), "--onnx", "--from", "checkpoint,gluon,torch"]) == 0
    printed = capsys.readouterr().out
    assert "max |normalised diff| to mxnet Module" in printed
    meta = json.loads((tmp_path / "y" / "onnx.json").read_text())
    assert list(meta["files"]) == ["model.checkpoint.onnx", "model.mxnet.onnx",
                                   "model.torch.onnx"]
    fixes = " ".join(meta["files"]["model.checkpoint.onnx"]["fixes"])
    assert "FullyConnected" in fixes and "PRelu" in fixes and "fixed-gamma" in fixes
    for name in meta["files"]:
        got = OnnxEmbedder(tmp_path / "y" / name, name, SIZE, 16)(x)
        assert _diff(got, want) <= TOL, name

    faces = _faces()
    _bin(tmp_path / "t.bin", faces)
    assert main(["eval", str(tmp_path / "t.bin"), "--mxnet", prefix, "--onnx",
                 str(tmp_path / "y"), "--batch-size", "8", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    rows = _rows(tmp_path / "out" / "metrics.csv")
    assert [r["backend"] for r in rows] == ["mxnet", "gluon", "torch", "onnx-torch",
                                            "onnx-mxnet", "onnx-checkpoint"]
    for r in rows:
        for key in METRICS:
            assert abs(float(r[key]) - float(rows[0][key])) <= 1e-5, (r["backend"], key)


def test_export_refuses_a_file_that_fails_its_check_and_keeps_the_old_ones(smallcnn, tmp_path,
                                                                          monkeypatch, capsys):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.npz", "model.json", "model.torch.onnx", "model.mxnet.onnx",
                 "onnx.json"):
        (folder / name).write_bytes((smallcnn / "model" / name).read_bytes())
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(onnx_model, "CHECK_TOLERANCE", -1.0)
    capsys.readouterr()
    assert main(["export", str(folder), "--onnx", "--from", "torch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: model.torch.onnx: the ONNX export from torch gives embeddings")
    assert err.endswith("nothing written")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.undo()
    # a partial re-export keeps the other file's entry
    assert main(["export", str(folder), "--onnx", "--from", "gluon"]) == 0
    meta = json.loads((folder / "onnx.json").read_text())
    assert list(meta["files"]) == ["model.torch.onnx", "model.mxnet.onnx"]


# ---- an .onnx that is not an embedding model ------------------------------------------------

def _graph_model(path, inputs, outputs, nodes):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _bad_models(tmp: Path) -> list[tuple[Path, str]]:
    img = ["N", 3, SIZE, SIZE]
    garbage = tmp / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf model")
    flat = helper.make_node("Flatten", ["x"], ["y"])
    return [
        (garbage, "not a readable ONNX model"),
        (_graph_model(tmp / "two_inputs.onnx", [_vi("a", img), _vi("b", img)], [_vi("y", img)],
                      [helper.make_node("Add", ["a", "b"], ["y"])]),
         "not an embedding model: 2 inputs (a, b)"),
        (_graph_model(tmp / "rank3.onnx", [_vi("x", ["N", 3, SIZE])], [_vi("y", ["N", 96])],
                      [flat]), "input 'x' has rank 3"),
        (_graph_model(tmp / "image_out.onnx", [_vi("x", img)], [_vi("y", img)],
                      [helper.make_node("Identity", ["x"], ["y"])]),
         "output 'y' has rank 4"),
        (_graph_model(tmp / "two_outputs.onnx", [_vi("x", img)],
                      [_vi("y", ["N", 3 * SIZE * SIZE]), _vi("z", ["N", 3 * SIZE * SIZE])],
                      [flat, helper.make_node("Identity", ["y"], ["z"])]),
         "2 outputs (y, z)"),
        (_graph_model(tmp / "small.onnx", [_vi("x", ["N", 3, 16, 16])], [_vi("y", ["N", 768])],
                      [flat]), "the model takes 32x32 images"),
    ]


def test_bad_onnx_is_a_one_line_error_naming_the_file(smallcnn, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.csv").write_text("kept\n")
    for path, message in _bad_models(tmp_path):
        capsys.readouterr()
        argv = ["eval", str(smallcnn / "t.bin"), "--onnx", str(path), "--out", str(out),
                "--no-progress"]
        if path.name == "small.onnx":  # a size the model folder contradicts
            argv += ["--model", str(smallcnn / "model")]
        assert main(argv) == 2, path.name
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: {path}: "), err[-1]
        assert message in err[-1], err[-1]
        assert (out / "metrics.csv").read_text() == "kept\n"  # nothing already written lost
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv"]


# ---- bad arguments fail before torch or mxnet is imported ------------------------------------

PROBE = """
import sys
from bench.cli import main
code = main(sys.argv[1:])
assert code == 2, code
for name in ("torch", "mxnet", "onnxruntime", "cv2", "matplotlib"):
    assert name not in sys.modules, f"{name} was imported before the argument error"
"""


def test_bad_arguments_fail_before_any_framework(smallcnn, tmp_path):
    binf, model = str(smallcnn / "t.bin"), str(smallcnn / "model")
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.npz", "model.json"):
        (bare / name).write_bytes((smallcnn / "model" / name).read_bytes())
    cases = [
        (["eval", binf, "--onnx", str(tmp_path / "nope.onnx")], "does not exist"),
        (["eval", binf, "--model", str(bare), "--backend", "onnx"],
         f"--backend onnx: no .onnx file in {bare}"),
        (["eval", binf, "--model", model, "--backend", "torch,tf"],
         "--backend must be all or a comma-separated list of mxnet, gluon, torch, onnx"),
        (["eval", binf], "give the model: --model DIR, --mxnet PREFIX and/or --onnx FILE"),
        (["eval", binf, "--onnx", f"{model}/model.torch.onnx", "--backend", "torch"],
         "--backend torch needs --model DIR or --mxnet PREFIX"),
        (["eval", binf, "--model", model, "--max-images", "3"], "--max-images needs"),
        (["export", str(bare), "--onnx", "--from", "checkpoint"], "names no MXNet checkpoint"),
        (["export", str(tmp_path), "--onnx"], "model.json"),
        (["export", model, "--onnx", "--opset", "21"], "--opset must be in [12, 20]"),
    ]
    for argv, message in cases:
        out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
        assert out.returncode == 0, (argv, out.stderr)
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, (argv, last)
