"""``scale="auto"``: AdaCos's fixed scale s = sqrt(2) ln(C - 1) (Zhang et al., CVPR 2019) for
every loss whose logits are cosines (W and x normalised), in both backends.

The rule's values, the loss built with "auto" against the same loss built with the number
(value and gradients, float64), the C <= 2 error, the joint objectives, the manifest and CLI
checks (no framework), and Partial FC: a shard's scale is the one of the whole class count.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from loss_backends import gluon_eval, gluon_loss, random_state, torch_eval, torch_loss

from bench.run import loss_settings
from common import contract, manifest
from gluon_impl import losses as GL
from pytorch_impl import losses as TL

ROOT = Path(__file__).resolve().parents[2]
AUTO_LOSSES = ("normface", "cosface", "arcface", "combined", "adaface", "magface",
               "subcenter_arcface", "curricularface")
AUTO_NAMES = [n for n in TL.list_losses() if n.split("+")[0] in AUTO_LOSSES]
SIZES = (3, 4, 7, 30, 1184, 85_742)


def adacos(num_classes: int) -> float:
    return math.sqrt(2.0) * math.log(num_classes - 1)


def _error(fn) -> str:
    with pytest.raises(ValueError) as err:
        fn()
    return str(err.value)


# ---- which losses take it, and the rule ---------------------------------------------------

def test_the_normalised_losses_and_their_joints_take_auto_the_others_do_not():
    takes = {n for n, e in manifest.load()["losses"].items()
             if e["hyperparameters"].get("scale", {}).get("auto") == "adacos"}
    assert takes == set(AUTO_NAMES)
    assert len(AUTO_NAMES) == 3 * len(AUTO_LOSSES)  # each, +center, +ring
    for losses in (TL, GL):  # the rule follows the maths: cosine logits
        for name in AUTO_LOSSES:
            cls = losses.base.loss_class(name)
            assert cls.normalize_weight and getattr(cls, "normalize_embedding", True), name
    assert not TL.base.loss_class("l2softmax").normalize_weight
    for name in ("softmax", "sphereface", "center", "ring"):
        assert "scale" not in manifest.loss_hyperparameters(name)


@pytest.mark.parametrize("num_classes", SIZES)
def test_the_rule_is_adacos_in_both_backends(num_classes):
    want = adacos(num_classes)
    assert contract.adacos_scale("X", num_classes) == want
    for name in AUTO_LOSSES:
        got = [losses.build_loss(name, num_classes=num_classes, embedding_size=3,
                                 scale="auto").scale for losses in (TL, GL)]
        assert got == [want, want] and all(type(s) is float for s in got), name


def test_the_rule_at_the_sizes_the_brief_names():
    assert contract.adacos_scale("X", 1184) == pytest.approx(10.0067, abs=1e-4)
    assert contract.adacos_scale("X", 30) == pytest.approx(4.7621, abs=1e-4)


def test_numeric_scales_are_unchanged():
    for losses in (TL, GL):
        assert losses.build_loss("arcface", 10, 3).scale == 64.0
        assert losses.build_loss("arcface", 10, 3, scale=16).scale == 16.0
        assert losses.build_loss("l2softmax", 10, 3).scale == 30.0


# ---- the loss built with "auto" is the loss built with the number --------------------------

C, D, B = 7, 5, 9


def _both(name, hp, state, x, y):
    tl = torch_loss(name, C, D, state, hp, "float64")
    gl = gluon_loss(name, C, D, state, hp, "float64")
    return torch_eval(tl, x, y, "float64"), gluon_eval(gl, x, y, "float64")


def _assert_same(a, b, what):
    assert a[0] == b[0], what
    assert a[1].keys() == b[1].keys()
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key], err_msg=f"{what} grad {key}")


@pytest.mark.parametrize("name", [*AUTO_LOSSES, "arcface+center", "cosface+ring"])
def test_auto_equals_the_explicit_number(name):
    rng = np.random.default_rng(3)
    state = random_state(name, C, D, rng)
    x = rng.normal(size=(B, D)) * rng.uniform(5.0, 30.0, size=(B, 1))  # MagFace's norm range
    y = rng.integers(0, C, size=B)
    auto = _both(name, {"scale": "auto"}, state, x, y)
    number = _both(name, {"scale": adacos(C)}, state, x, y)
    for backend, a, n in zip(("torch", "gluon"), auto, number, strict=True):
        _assert_same(a, n, f"{name} {backend}")
    # and the backends agree at that scale, as at any other (tests/losses/test_loss_parity.py)
    assert auto[0][0] == pytest.approx(auto[1][0], rel=1e-10)
    for key in auto[0][1]:
        np.testing.assert_allclose(auto[0][1][key], auto[1][1][key], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "gluon"])
def test_the_joint_objective_uses_the_resolved_scale(backend):
    losses = {"torch": TL, "gluon": GL}[backend]
    for aux in ("center", "ring"):
        joint = losses.build_loss(f"arcface+{aux}", num_classes=30, embedding_size=4,
                                  scale="auto", margin=0.3)
        assert joint.base.scale == adacos(30) and joint.base.margin == 0.3


# ---- C <= 2 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [1, 2])
@pytest.mark.parametrize("name", AUTO_NAMES)
def test_two_classes_or_fewer_have_no_auto_scale(name, num_classes):
    texts = [_error(lambda m=losses: m.build_loss(name, num_classes=num_classes,
                                                   embedding_size=3, scale="auto"))
             for losses in (TL, GL)]
    assert texts[0] == texts[1]
    owner = TL.base.loss_class(name.split("+")[0]).__name__
    assert texts[0] == (f"{owner}: scale='auto' (AdaCos, sqrt(2) * ln(num_classes - 1)) "
                        f"needs num_classes > 2, got num_classes={num_classes}")
    for losses in (TL, GL):  # a number is fine there
        losses.build_loss(name, num_classes=num_classes, embedding_size=3, scale=8.0)


# ---- the manifest and the CLI (no framework) ------------------------------------------------

def test_check_loss_args_takes_auto_and_refuses_what_the_constructor_refuses():
    assert manifest.check_loss_args("arcface", {"scale": "auto"}) == {"scale": "auto"}
    assert manifest.check_loss_args("curricularface+ring", {"scale": "auto"}) == {
        "scale": "auto"}
    for name, value in [("arcface", "autox"), ("arcface", "AUTO"), ("arcface", -1.0),
                        ("arcface+center", "autox"), ("l2softmax", "auto"),
                        ("l2softmax+ring", "auto")]:
        expect = _error(lambda n=name, v=value: manifest.check_loss_args(n, {"scale": v}))
        for losses in (TL, GL):
            got = _error(lambda n=name, v=value, m=losses: m.build_loss(
                n, num_classes=10, embedding_size=3, scale=v))
            assert got == expect, (name, value)
    assert _error(lambda: manifest.check_loss_args("arcface", {"scale": "autox"})) == (
        "ArcFace: argument 'scale' must be a real number in (0, 1e+06] or 'auto', "
        "got 'autox'")
    assert _error(lambda: manifest.check_loss_args("l2softmax", {"scale": "auto"})) == (
        "L2Softmax: argument 'scale' must be a real number in (0, 1e+06], got 'auto'")


def test_the_spec_round_trips_through_the_manifest():
    spec = TL.base.loss_class("arcface").specs()["scale"][1]
    assert spec == contract.SCALE_AUTO and spec.auto == "adacos"
    assert contract.spec_from_json(spec.to_json()) == spec
    plain = TL.base.loss_class("l2softmax").specs()["scale"][1]
    assert "auto" not in plain.to_json() and contract.spec_from_json(plain.to_json()) == plain


def test_the_loss_label_keeps_auto():
    settings = loss_settings.parse("arcface:scale=auto,margin=0.3")
    assert settings == {"arcface": {"scale": "auto", "margin": 0.3}}
    labels = loss_settings.run_labels(["arcface"], settings, manifest.loss_names())
    assert labels == ["arcface[margin=0.3,scale=auto]"]
    assert loss_settings.split(labels[0]) == ("arcface", {"margin": 0.3, "scale": "auto"})


PROBE = """
import sys
from bench.cli import main
assert main(sys.argv[1:]) == 2
for name in ("torch", "mxnet"):
    assert name not in sys.modules, name
"""


@pytest.mark.parametrize(("scale", "epochs", "message"), [
    ("auto", "0", "error: epochs must be an integer >= 1, got 0"),
    ("autox", "1", "error: ArcFace: argument 'scale' must be a real number in (0, 1e+06] "
                   "or 'auto', got 'autox'"),
])
def test_the_cli_checks_auto_without_a_framework(scale, epochs, message, tmp_path):
    argv = ["run", "--losses", "arcface", "--loss-args", f"arcface:scale={scale}",
            "--epochs", epochs]
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == message


def test_with_valid_epochs_auto_passes_every_check_before_the_frameworks():
    from bench.cli import build_parser
    from bench.commands import run as run_command
    from bench.run import options

    args = build_parser().parse_args(["run", "--losses", "arcface,cosface+center",
                                      "--loss-args", "arcface:scale=auto;"
                                      "cosface+center:scale=auto", "--epochs", "1"])
    assert options.check(run_command.config(args)) == ["arcface[scale=auto]",
                                                      "cosface+center[scale=auto]"]


# ---- Partial FC: a shard's scale is the scale of every class -------------------------------

PFC_LOSSES = ("arcface", "adaface", "subcenter_arcface", "curricularface")
PFC_C, PFC_WORLD = 7, 3  # shards of 3, 2, 2 classes: "auto" per shard would be refused


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch

    torch.set_num_threads(1)
    from pytorch_impl.distributed import destroy_process_group, gather_rows_nograd, shard_bounds
    from pytorch_impl.distributed import init_process_group as init
    from pytorch_impl.partial_fc import PartialFC

    init(rank, world, init_method=f"tcp://127.0.0.1:{port}", backend="gloo")
    lo, hi = shard_bounds(B, world, rank)
    res = {}
    for name in PFC_LOSSES:
        torch.manual_seed(77)
        x = torch.nn.functional.normalize(torch.randn(B, D, dtype=torch.float64))
        x = x * torch.linspace(4.0, 24.0, B, dtype=torch.float64)[:, None]
        y = torch.randint(0, PFC_C, (B,))
        # by name: each rank builds its shard; the reference gets the gathered weights
        pfc = PartialFC(name, num_classes=PFC_C, embedding_size=D, scale="auto").double()
        ref = TL.build_loss(name, num_classes=PFC_C, embedding_size=D,
                            scale="auto").double()
        with torch.no_grad():
            ref.weight.copy_(gather_rows_nograd(pfc.weight.detach()))
        for key, source in (("name", pfc), ("built", PartialFC(ref, sample_rate=1.0))):
            ref.zero_grad()
            xr = x.clone().requires_grad_(True)
            want = ref(xr, y)
            want.backward()
            xl = x[lo:hi].clone().requires_grad_(True)
            got = source(xl, y[lo:hi])
            got.backward()
            k = source.rows_per_class
            res[f"{name}/{key}/scale"] = np.array([source.head.scale, ref.scale])
            res[f"{name}/{key}/loss"] = np.array([float(got.detach()), float(want.detach())])
            res[f"{name}/{key}/gx"] = np.stack([xl.grad.numpy(), xr.grad[lo:hi].numpy()])
            res[f"{name}/{key}/gw"] = np.stack([
                source.weight.grad.numpy(),
                ref.weight.grad[source.start * k:source.end * k].numpy()])
    np.savez(os.path.join(out, f"rank{rank}.npz"), **res)
    destroy_process_group()


@pytest.fixture(scope="module")
def pfc_ranks(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("pfc_auto")
    mp.spawn(_worker, args=(PFC_WORLD, _free_port(), str(out)), nprocs=PFC_WORLD, join=True)
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(PFC_WORLD)]


@pytest.mark.parametrize("name", PFC_LOSSES)
@pytest.mark.parametrize("how", ["name", "built"])
def test_partial_fc_shards_use_the_scale_of_every_class(pfc_ranks, name, how):
    for rank, res in enumerate(pfc_ranks):
        key = f"{name}/{how}"
        assert res[f"{key}/scale"].tolist() == [adacos(PFC_C)] * 2, rank
        got, want = res[f"{key}/loss"]
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), rank
        np.testing.assert_allclose(*res[f"{key}/gx"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(*res[f"{key}/gw"], rtol=1e-9, atol=1e-12)


def test_single_rank_partial_fc_resolves_with_every_class():
    from pytorch_impl.partial_fc import PartialFC

    pfc = PartialFC("cosface", num_classes=30, embedding_size=4, scale="auto")
    assert pfc.head.scale == adacos(30)
    assert _error(lambda: PartialFC("cosface", num_classes=2, embedding_size=4,
                                    scale="auto")) == _error(
        lambda: TL.build_loss("cosface", num_classes=2, embedding_size=4, scale="auto"))
