"""Reliability of training: resume equals an uninterrupted run, kill -9, NaN stop, pre-flight.

- A run stopped mid-epoch and resumed from its checkpoint ends with bit-identical losses and
  weights to an uninterrupted run, in both backends (and a loss with explicit state: centres).
- ``kill -9`` of ``python -m bench run`` after a checkpoint, then the same command again: the
  table's metric columns equal those of an uninterrupted run bit for bit (timing columns are
  measurements and differ).
- A learning rate that blows up marks the cell ``nonfinite`` with a message, the other cells
  still run, the command exits 1, and no checkpoint ever holds a NaN.
- A missing data folder, an unwritable results folder or a full disk stop before training.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.run import cell, harness
from bench.run.config import HarnessConfig
from bench.run.data import train_images
from common.images import make_batch
from common.sampler import EpochSampler
from common.schedule import build_schedule
from common.synthetic import generate
from common.trainloop import NonFiniteError, fit, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TIMING = ["img_per_s", "head_ms_per_step", "wall_s"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    generate(root / "tiny", num_identities=6, images_per_identity=6, heldout_identities=4,
             num_pairs=20, image_size=32, difficulty=0.5, seed=2, progress=False)
    return root


def args(root, name, *extra):
    return ["run", "--data", str(root / "tiny"), "--results", str(root / name / "results"),
            "--runs", str(root / name / "runs"),
            "--models", str(root / name / "models"), "--image-size", "32", "--width", "4",
            "--embedding-size", "16", "--epochs", "2", "--batch-size", "12", "--pk", "3",
            "--lr", "0.05", "--no-progress", "--no-plots", *extra]


def metric_rows(root, name):
    # read as text: the comparison is exact, and an empty message or a nan must equal itself
    table = pd.read_csv(root / name / "results" / "tiny" / "results.csv", comment="#",
                        dtype=str, keep_default_na=False)
    # model_dir names the run's own folder (another root per run); its weights are compared by
    # tests/bench/test_cell_models.py
    return table.drop(columns=[*TIMING, "model_dir"]).to_dict("records")


@pytest.mark.parametrize("backend", ["pytorch", "gluon"])
def test_stopped_and_resumed_run_equals_uninterrupted(tiny, tmp_path, backend):
    cfg = HarnessConfig(data=str(tiny / "tiny"), image_size=32, embedding_size=16,
                                backbone_kwargs={"width": 4}, batch_size=12, epochs=2)
    images, labels, classes = train_images(Path(cfg.data), cfg.image_size)
    params, lstate = cell.initial_state(cfg, "center", classes)
    sampler = EpochSampler(labels, cfg.batch_size, cfg.seed)
    schedule = build_schedule("cosine", 0.05, cfg.epochs, len(sampler), warmup_epochs=0.5)

    def batch(idx, flips):
        return make_batch(images[idx], flips)

    def run(ckpt, stop=None):
        trainer = cell.build_trainer(backend, cfg, "center", classes, params, lstate)
        history = fit(trainer, sampler, labels, batch, schedule, cfg.epochs, checkpoint=ckpt,
                      stop_after_steps=stop, checkpoint_every=1, progress=False)
        return history, trainer.state_arrays()

    whole, whole_state = run(tmp_path / "a.npz")
    mid = len(sampler) + 1  # inside the second epoch
    part, _ = run(tmp_path / "b.npz", stop=mid)
    assert not part["finished"] and len(part["steps"]["loss"]) == mid
    resumed, resumed_state = run(tmp_path / "b.npz")
    assert resumed["finished"]
    assert resumed["steps"]["loss"] == whole["steps"]["loss"]
    assert resumed["epochs"] == whole["epochs"]
    assert whole_state.keys() == resumed_state.keys()
    for k in whole_state:
        np.testing.assert_array_equal(whole_state[k], resumed_state[k], err_msg=k)


def test_kill_9_then_rerun_gives_the_uninterrupted_table(tiny):
    assert main(args(tiny, "whole", "--losses", "softmax")) == 0
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "bench", *args(tiny, "killed", "--losses", "softmax",
                                                   "--checkpoint-every", "1")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    runs = tiny / "killed" / "runs" / "tiny"
    deadline = time.monotonic() + 60
    while not list(runs.glob("softmax__*.ckpt.npz")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(runs.glob("softmax__*.ckpt.npz")), "no checkpoint was written before the kill"
    assert main(args(tiny, "killed", "--losses", "softmax")) == 0
    assert metric_rows(tiny, "killed") == metric_rows(tiny, "whole")


def test_exploding_lr_marks_cells_nonfinite_and_exits_1(tiny, capsys):
    code = main(args(tiny, "nan", "--losses", "softmax,normface", "--backends", "pytorch",
                     "--lr", "1e9", "--checkpoint-every", "1"))
    assert code == 1
    table = pd.read_csv(tiny / "nan" / "results" / "tiny" / "results.csv", comment="#")
    assert sorted(table["loss"]) == ["normface", "softmax"]  # the second cell still ran
    assert (table["status"] == "nonfinite").all()
    assert table["message"].str.contains("not written").all()
    assert "FAILED softmax/pytorch: nonfinite" in capsys.readouterr().err
    for ckpt in (tiny / "nan" / "runs" / "tiny").glob("*.ckpt.npz"):
        arrays, _ = load_checkpoint(ckpt)
        assert all(np.isfinite(v).all() for v in arrays.values() if v.dtype.kind == "f")


def test_nonfinite_state_never_replaces_a_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(3, np.float32)}, {"position": 1})
    with pytest.raises(NonFiniteError, match="non-finite values in w"):
        save_checkpoint(path, {"w": np.array([1.0, np.nan], np.float32)}, {"position": 2})
    arrays, meta = load_checkpoint(path)
    np.testing.assert_array_equal(arrays["w"], np.ones(3, np.float32))
    assert meta == {"position": 1} and list(tmp_path.iterdir()) == [path]


def test_preflight_errors_come_before_training(tiny, tmp_path, capsys, monkeypatch):
    assert main(args(tiny, "x", "--data", str(tmp_path / "nowhere"))) == 2
    assert f"folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(args(tiny, "x", "--results", str(blocker / "results"))) == 2
    assert "is not writable" in capsys.readouterr().err
    monkeypatch.setattr(harness.shutil, "disk_usage",
                        lambda p: SimpleNamespace(total=2**30, used=2**30, free=1024))
    assert main(args(tiny, "full")) == 2
    assert "MiB free" in capsys.readouterr().err
    assert not (tiny / "full" / "results" / "tiny" / "cells").exists()
    assert main(args(tiny, "x", "--losses", "nosuchloss")) == 2
    assert "unknown loss(es) nosuchloss" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["pytorch", "gluon"])
def test_a_checkpoint_with_a_missing_or_an_extra_array_is_refused(backend):
    """Both trainers load through ``common.trainloop.split_state``: an array missing or one
    the trainer lacks raises ValueError naming it, and momentum may be absent (before step 1)."""
    from common.trainloop import split_state

    if backend == "pytorch":
        import torch

        from pytorch_impl.losses import build_loss
        from pytorch_impl.train import Trainer
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
        trainer = Trainer(net, build_loss("center", num_classes=3, embedding_size=4))
    else:
        from mxnet import gluon

        from gluon_impl.losses import build_loss
        from gluon_impl.train import Trainer
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Flatten(), gluon.nn.Dense(4, in_units=12))
        net.initialize()
        loss = build_loss("center", num_classes=3, embedding_size=4)
        trainer = Trainer(net, loss)
    images = np.random.default_rng(0).normal(size=(4, 3, 2, 2)).astype(np.float32)
    trainer.train_step(images, np.array([0, 1, 2, 0]))
    arrays = trainer.state_arrays()
    assert any(k.startswith("momentum/") for k in arrays)
    parts = split_state(arrays, arrays)
    assert "centers" in parts["lossstate"] and parts["backbone"] and parts["momentum"]
    no_momentum = {k: v for k, v in arrays.items() if not k.startswith("momentum/")}
    trainer.load_state_arrays(no_momentum)  # momentum may be absent
    dropped = next(k for k in arrays if k.startswith("backbone/"))
    with pytest.raises(ValueError, match="lacks 1 arrays.*" + re.escape(dropped)):
        trainer.load_state_arrays({k: v for k, v in arrays.items() if k != dropped})
    with pytest.raises(ValueError, match=r"unexpected arrays: \['backbone/extra'\]"):
        trainer.load_state_arrays({**arrays, "backbone/extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected arrays: \['optimizer/lr'\]"):
        trainer.load_state_arrays({**arrays, "optimizer/lr": np.zeros(1)})
