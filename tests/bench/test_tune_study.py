"""bench.tune.study: an equal budget of finished trials per study, resumed across sittings with
the earlier trials untouched, interrupted and killed trials redone at the same point, failed
trials counted, a changed protocol refused; and one trial through the real harness on a tiny
set, which sees the validation pairs only."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.run.config import HarnessConfig
from bench.tune import study as st
from bench.tune.split import SplitSpec, prepare_split, summary
from common.synthetic import generate

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _tuning(tmp_path, loss="arcface", fixed=None, split=None, data=None, **cfg) -> st.Tuning:
    base = HarnessConfig(data=str(data or tmp_path / "val"), backends=("pytorch",),
                         backbone="smallcnn",
                         backbone_kwargs={"width": 4}, embedding_size=16, image_size=32,
                         epochs=cfg.pop("epochs", 1), batch_size=12, pk=3, flip_test=False,
                         progress=False, plots=False, **cfg)
    return st.Tuning(loss, fixed or {}, base, tmp_path / "trials",
                     split or {"fraction": 0.2, "seed": 0})


class FakeHarness:
    """Stands in for bench.run.harness.run: a value from the trial's lr and margin, a status
    per call (``statuses``), an exception at call ``raise_at``."""

    def __init__(self, statuses=(), raise_at=None):
        self.calls, self.statuses, self.raise_at = [], list(statuses), raise_at

    def __call__(self, cfg, log=print):
        self.calls.append(cfg)
        if len(self.calls) == self.raise_at:
            raise KeyboardInterrupt
        status = self.statuses[len(self.calls) - 1] if self.statuses else "ok"
        settings = next(iter(cfg.loss_args.values()), {})
        value = 1.0 - abs(math.log(cfg.lr / 0.1)) / 10 - abs(settings.get("margin", 0.5) - 0.5)
        final = {"val": {"acc_mean": value, "acc_std": 0.01}} if status == "ok" else {}
        return [{"loss": cfg.losses[0], "backend": cfg.backends[0], "status": status,
                 "message": "" if status == "ok" else "loss became NaN", "final_eval": final}]


def _frozen(trial) -> tuple:
    return (trial.number, trial.state, trial.params, trial.value, trial.user_attrs)


def test_a_study_resumes_to_its_budget_and_keeps_the_trials_it_had(tmp_path):
    t = _tuning(tmp_path)
    storage = st.open_storage(tmp_path / "a" / st.STUDY_FILE)
    fake = FakeHarness()
    first = st.tune(t, storage, 1, fake, log=lambda _: None)
    assert st.finished(first) == 1
    before = _frozen(first.trials[0])
    again = st.tune(t, storage, 2, fake, log=lambda _: None)  # the budget raised: resume
    assert st.finished(again) == 2 and len(again.trials) == 2 and len(fake.calls) == 2
    assert _frozen(again.trials[0]) == before
    assert st.tune(t, storage, 2, fake, log=lambda _: None) and len(fake.calls) == 2
    # one sitting proposes what two sittings did (the sampler is seeded per trial number)
    one = st.tune(t, st.open_storage(tmp_path / "b" / st.STUDY_FILE), 2, FakeHarness(),
                  log=lambda _: None)
    assert [tr.params for tr in one.trials] == [tr.params for tr in again.trials]
    assert again.trials[0].params != again.trials[1].params
    # the records: protocol and budget on the study, the run on each trial
    attrs = again.user_attrs
    assert attrs["budget"] == 2 and attrs["protocol"]["loss"] == "arcface"
    assert attrs["protocol"]["sampler"]["seed"] == 0
    assert set(attrs["protocol"]["space"]) == {"lr", "weight_decay", "scale", "margin"}
    tr = again.trials[1]
    assert tr.user_attrs["status"] == "ok" and tr.user_attrs["wall_s"] >= 0
    assert tr.user_attrs["folder"] == str(tmp_path / "trials" / "arcface" / "trial1")
    assert tr.user_attrs["label"].startswith("arcface[margin=")
    assert fake.calls[1].lr == tr.params["lr"] and \
        fake.calls[1].weight_decay == tr.params["weight_decay"]
    assert fake.calls[1].loss_args == {"arcface": {"margin": tr.params["margin"],
                                                   "scale": tr.params["scale"]}}
    assert st.best_point(again) == max(again.trials, key=lambda x: x.value).params


def test_an_interrupted_trial_is_redone_at_the_same_point_in_the_same_folder(tmp_path):
    t = _tuning(tmp_path, loss="cosface")
    storage = st.open_storage(tmp_path / st.STUDY_FILE)
    with pytest.raises(KeyboardInterrupt):
        st.tune(t, storage, 2, FakeHarness(raise_at=2), log=lambda _: None)
    s = st.load_study(storage, "cosface")
    assert [tr.state for tr in s.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                             TrialState.WAITING]
    assert s.user_attrs["interrupted"] == [1] and st.finished(s) == 1
    fake = FakeHarness()
    s = st.tune(t, storage, 2, fake, log=lambda _: None)
    assert st.counts(s) == {"complete": 2, "failed": 0, "interrupted": 1, "running": 0,
                            "waiting": 0}
    redo = s.trials[2]
    assert redo.params == s.trials[1].params and redo.user_attrs["redo_of"] == 1
    assert fake.calls[0].results == str(tmp_path / "trials" / "cosface" / "trial1")


def test_a_trial_left_running_by_a_dead_process_is_redone_a_live_one_is_not(tmp_path):
    t = _tuning(tmp_path, loss="sphereface")
    storage = st.open_storage(tmp_path / st.STUDY_FILE)
    s = st.open_study(t, storage, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = s.ask()
    point = st.search_space.suggest(trial, "sphereface")
    trial.set_user_attr("host", st.socket.gethostname())
    trial.set_user_attr("pid", dead.pid)  # the process that ran it is gone (kill -9)
    fake = FakeHarness()
    s = st.tune(t, storage, 1, fake, log=lambda _: None)
    assert [tr.state for tr in s.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert s.trials[1].params == point and s.user_attrs["interrupted"] == [0]
    assert len(fake.calls) == 1
    # a RUNNING trial of a live process elsewhere on this host counts as under way
    other = _tuning(tmp_path, loss="normface")
    s2 = st.open_study(other, storage, 1)
    live = s2.ask()
    live.set_user_attr("host", st.socket.gethostname())
    live.set_user_attr("pid", os.getppid())
    s2 = st.tune(other, storage, 1, fake, log=lambda _: None)
    assert len(fake.calls) == 1 and s2.trials[0].state == TrialState.RUNNING


def test_failed_trials_count_toward_the_budget(tmp_path):
    t = _tuning(tmp_path, loss="triplet")
    storage = st.open_storage(tmp_path / st.STUDY_FILE)
    fake = FakeHarness(statuses=["nonfinite", "error"])
    s = st.tune(t, storage, 2, fake, log=lambda _: None)
    assert st.counts(s)["failed"] == 2 and st.finished(s) == 2 and len(fake.calls) == 2
    assert [tr.user_attrs["status"] for tr in s.trials] == ["nonfinite", "error"]
    assert st.best_point(s) is None


def test_a_study_reopened_with_another_protocol_is_refused(tmp_path):
    storage = st.open_storage(tmp_path / st.STUDY_FILE)
    st.tune(_tuning(tmp_path, loss="softmax"), storage, 1, FakeHarness(), log=lambda _: None)
    with pytest.raises(ValueError, match=r"another protocol \(differs in: config\)"):
        st.tune(_tuning(tmp_path, loss="softmax", epochs=2), storage, 1, FakeHarness())
    fixed = _tuning(tmp_path, loss="arcface", fixed={"scale": "auto"})
    s = st.tune(fixed, storage, 1, FakeHarness(), log=lambda _: None)
    assert s.study_name == "arcface[scale=auto]" and "scale" not in s.trials[0].params
    assert st.trial_seed(0, 5) != st.trial_seed(1, 5)
    with pytest.raises(ValueError, match="--trials must be an integer >= 1"):
        st.tune(fixed, storage, 0, FakeHarness())


def test_rounded_keeps_four_significant_digits():
    assert st.rounded({"lr": 0.0123456, "margin": 0.5, "sub_centers": 3}) == \
        {"lr": 0.01235, "margin": 0.5, "sub_centers": 3}


def test_trials_through_the_harness_see_only_the_validation_pairs_and_resume(tmp_path):
    from bench.run.harness import run as run_harness

    generate(tmp_path / "tiny", num_identities=12, images_per_identity=6, heldout_identities=6,
             num_pairs=40, image_size=32, difficulty=0.5, seed=1, progress=False)
    record = summary(prepare_split(tmp_path / "tiny", tmp_path / "tiny_val", SplitSpec()))
    t = _tuning(tmp_path, loss="cosface", split=record, data=tmp_path / "tiny_val")
    storage = st.open_storage(tmp_path / st.STUDY_FILE)
    s = st.tune(t, storage, 1, run_harness, log=lambda _: None)
    trial = s.trials[0]
    assert trial.state == TrialState.COMPLETE
    cells = list((Path(trial.user_attrs["folder"]) / "tiny_val" / "cells").glob("*.json"))
    assert len(cells) == 1
    cell = json.loads(cells[0].read_text())
    assert set(cell["final_eval"]) == {"val"}  # the test pairs (lfw.bin) are never evaluated
    assert cell["backend"] == "pytorch" and cell["config"]["seed"] == 0
    assert trial.value == cell["final_eval"]["val"]["acc_mean"]
    assert cell["config"]["lr"] == trial.params["lr"]
    assert not (Path(trial.user_attrs["folder"]) / "models").exists()  # dropped after the trial
    assert s.user_attrs["protocol"]["split"]["val_identities"] == 2
    before = _frozen(trial)
    s = st.tune(t, storage, 2, run_harness, log=lambda _: None)  # the second sitting
    assert st.finished(s) == 2 and len(s.trials) == 2 and _frozen(s.trials[0]) == before
    assert s.trials[1].state == TrialState.COMPLETE
    assert s.trials[1].user_attrs["folder"].endswith("trial1")
