"""common.search_space: every registered loss has a search space, inside the manifest's valid
values, and both backends build every loss from points of it."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from common import manifest, search_space
from common.backends import BACKENDS
from common.search_space import TRAINING, Categorical, Float, Int

ROOT = Path(__file__).resolve().parents[2]
LOSSES = manifest.loss_names()


def test_every_registered_loss_has_a_space_of_its_own_keys():
    assert len(LOSSES) == 35  # 15 single losses + 10 joinable bases x {center, ring}
    for name in LOSSES:
        own = search_space.loss_space(name)
        keys = manifest.loss_hyperparameters(name)
        assert set(own) <= set(keys), name
        assert list(search_space.space(name))[:2] == ["lr", "weight_decay"]
        if name != "softmax":
            assert own, f"{name}: a loss with hyper-parameters searches at least one"


def test_a_joint_space_is_its_base_plus_the_aux_weight():
    for name in (n for n in LOSSES if "+" in n):
        base = name.split("+")[0]
        assert search_space.loss_space(name) == {**search_space.loss_space(base),
                                                 "lambda_": search_space.AUX_WEIGHT}, name


def _corners(space: dict) -> list[dict]:
    """All-low and all-high points, then each dimension at either end with the others low."""
    ends = {k: d.ends() for k, d in space.items()}
    points = [{k: e[0] for k, e in ends.items()}, {k: e[-1] for k, e in ends.items()}]
    for key, e in ends.items():
        for v in e:
            points.append({**points[0], key: v})
    return points


@pytest.mark.parametrize("name", LOSSES)
def test_every_point_of_the_space_is_a_valid_setting(name):
    """Corners and random points pass the constructors' own checks (the manifest's ranges)."""
    rng = random.Random(name)
    points = _corners(search_space.space(name))
    points += [search_space.sample(name, rng) for _ in range(50)]
    for point in points:
        training, settings = search_space.split(point)
        assert set(training) == {"lr", "weight_decay"}
        assert 0.01 <= training["lr"] <= 0.5 and 1e-5 <= training["weight_decay"] <= 5e-3
        manifest.check_loss_args(name, settings)  # raises the constructor's ValueError


def test_a_range_outside_the_manifest_is_caught(monkeypatch):
    """The check above can fail: a margin past ArcFace's [0, pi) is refused."""
    monkeypatch.setitem(search_space.LOSS_SPACES, "arcface", {"margin": Float(0.1, 3.5)})
    with pytest.raises(ValueError, match="'margin' must be a real number in"):
        for point in _corners(search_space.space("arcface")):
            manifest.check_loss_args("arcface", search_space.split(point)[1])


def test_fixed_settings_leave_the_search():
    assert set(search_space.space("arcface")) == {"lr", "weight_decay", "scale", "margin"}
    assert set(search_space.space("arcface", {"scale": "auto"})) == \
        {"lr", "weight_decay", "margin"}


def test_a_loss_without_a_space_or_with_a_stray_key_is_refused(monkeypatch):
    monkeypatch.delitem(search_space.LOSS_SPACES, "cosface")
    with pytest.raises(ValueError, match="no search space for loss 'cosface'"):
        search_space.space("cosface")
    with pytest.raises(ValueError, match="no search space for loss 'cosface\\+ring'"):
        search_space.space("cosface+ring")
    monkeypatch.setitem(search_space.LOSS_SPACES, "normface", {"margin": Float(0.1, 0.5)})
    with pytest.raises(ValueError, match="names margin, which are not its hyper-parameters"):
        search_space.space("normface")
    with pytest.raises(ValueError, match="unknown loss 'nosuch'"):
        search_space.space("nosuch")


def test_entries_check_their_bounds_and_sample_inside():
    with pytest.raises(ValueError, match="need finite lo < hi"):
        Float(1.0, 1.0)
    with pytest.raises(ValueError, match="log range needs lo > 0"):
        Float(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="need integers lo < hi"):
        Int(1, 1)
    with pytest.raises(ValueError, match="need >= 2 distinct choices"):
        Categorical((True, True))
    rng = random.Random(0)
    f, i, c = Float(1e-3, 1e-1, log=True), Int(1, 4), Categorical((False, True))
    xs = [f.sample(rng) for _ in range(2000)]
    assert all(f.contains(x) for x in xs)
    below = sum(x < 1e-2 for x in xs) / len(xs)  # log-uniform: half below the geometric mean
    assert 0.45 < below < 0.55
    assert {i.sample(rng) for _ in range(200)} == {1, 2, 3, 4}
    assert {c.sample(rng) for _ in range(50)} == {False, True}
    assert not i.contains(True) and not f.contains(2) and not c.contains(0)


def test_optuna_suggests_inside_each_entry():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        point = search_space.suggest(trial, "subcenter_arcface")
        space = search_space.space("subcenter_arcface")
        assert set(point) == set(space)
        assert all(space[k].contains(v) for k, v in point.items()), point
        study.tell(trial, 0.0)
    assert {type(v) for v in point.values()} == {float, int}


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_build_every_loss_from_a_sampled_point(backend):
    from common.backends import load

    losses = load(backend).losses
    rng = random.Random(backend)
    checked = 0
    for name in LOSSES:
        _, settings = search_space.split(search_space.sample(name, rng))
        loss = losses.build_loss(name, num_classes=10, embedding_size=8, **settings)
        parts = [loss, getattr(loss, "base", None), getattr(loss, "aux", None)]  # joints
        for key, value in settings.items():  # each value reached the loss that keeps it
            held = [getattr(p, key) for p in parts if isinstance(getattr(p, key, None),
                                                               (int, float))]
            assert held, (name, key)
            assert math.isclose(held[0], value), (name, key, held, value)
            checked += 1
    assert checked > 60


def test_importing_the_space_imports_neither_numpy_nor_a_framework():
    code = ("import sys, common.search_space as s; s.space('arcface+center'); "
            "print(','.join(m for m in ('numpy', 'torch', 'mxnet', 'optuna') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_training_knobs_are_the_same_for_every_loss():
    for name in LOSSES:
        space = search_space.space(name)
        assert {k: space[k] for k in TRAINING} == TRAINING
