"""``python -m bench tune`` end to end on a tiny generated set (2 losses x 2 trials, then default
and tuned over 2 seeds in both backends), its rerun and report rebuild, and its argument checks,
which fail before torch, mxnet or optuna is imported."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bench.cli import main
from bench.report.tables import read_metadata
from common.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    generate(root / "tiny", num_identities=12, images_per_identity=6, heldout_identities=6,
             num_pairs=40, image_size=32, difficulty=0.5, seed=1, progress=False)
    return root


def command(root, *extra):
    return ["tune", "--data", str(root / "tiny"), "--losses", "arcface,softmax",
            "--trials", "2", "--final-seeds", "0", "1", "--split-root", str(root / "split"),
            "--results", str(root / "results"), "--runs", str(root / "runs"),
            "--models", str(root / "models"), "--backbone", "smallcnn", "--width", "4",
            "--embedding-size", "16", "--epochs", "1", "--batch-size", "12", "--pk", "3",
            "--no-progress", *extra]


def test_tune_then_final_writes_the_report_and_resumes(tiny, capsys):
    assert main(command(tiny)) == 0
    out = tiny / "results" / "tuning" / "tiny"
    storage = f"sqlite:///{out / 'studies.sqlite'}"
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    assert set(studies) == {"arcface", "softmax"}
    for name in studies:
        s = optuna.load_study(study_name=name, storage=storage)
        assert [t.state.name for t in s.trials] == ["COMPLETE", "COMPLETE"]
        assert s.user_attrs["budget"] == 2
        assert s.user_attrs["protocol"]["split"]["val_identities"] == 2
        for t in s.trials:  # trials trained on the split and were scored on val.bin only
            cell = next((Path(t.user_attrs["folder"]) / "tiny_val" / "cells").glob("*.json"))
            assert set(json.loads(cell.read_text())["final_eval"]) == {"val"}
    cells = pd.read_csv(out / "results.csv", comment="#")
    assert len(cells) == 2 * 2 * 2 * 2  # losses x default/tuned x backends x seeds
    assert (cells["status"] == "ok").all() and set(cells["target"]) == {"lfw"}
    assert set(cells["backend"]) == {"pytorch", "gluon"}
    assert set(cells["variant"]) == {"default", "tuned"} and set(cells["seed"]) == {0, 1}
    tuned = cells[(cells["variant"] == "tuned") & (cells["loss"] == "arcface")]
    assert tuned["label"].str.startswith("arcface[").all()  # the best point, rounded
    summary = pd.read_csv(out / "summary.csv", comment="#")
    assert len(summary) == 4 and summary[["default_mean", "tuned_mean"]].notna().all().all()
    for r in summary.itertuples():  # the paired difference is tuned - default, seed by seed
        mine = cells[(cells["loss"] == r.loss) & (cells["backend"] == r.backend)]
        diff = (mine[mine.variant == "tuned"].sort_values("seed")["acc_mean"].to_numpy()
                - mine[mine.variant == "default"].sort_values("seed")["acc_mean"].to_numpy())
        assert math.isclose(r.diff_mean, diff.mean(), abs_tol=1e-12)
    gaps = pd.read_csv(out / "gap.csv", comment="#")
    assert len(gaps) == 4 and set(gaps["variant"]) == {"default", "tuned"}
    ranks = pd.read_csv(out / "ranking.csv", comment="#")
    assert len(ranks) == 2 * 2 * 2 and set(ranks["rank"]) <= {1, 2}
    tuning = pd.read_csv(out / "tuning.csv", comment="#")
    assert tuning["complete"].tolist() == [2, 2] and (tuning["tuning_wall_s"] > 0).all()
    trials = pd.read_csv(out / "trials.csv", comment="#")
    assert len(trials) == 4 and (trials["state"] == "complete").all()
    meta = read_metadata(out / "results.csv")
    assert meta["budget"] == 2 and meta["tune_backend"] == "pytorch"
    assert meta["final_seeds"] == [0, 1] and meta["split"]["pairs"] == 60
    md = (out / "results.md").read_text()
    assert "## lfw: paper default vs tuned" in md and "transfer to gluon" in md
    assert "## lfw: ranking, tuned, gluon" in md and "| arcface | 2 / 0 | 0 |" in md
    assert (out / "tuning.png").stat().st_size > 1000
    assert (out / "final" / "default" / "seed1" / "tiny" / "cells"
            / "softmax__gluon.json").is_file()

    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    assert main(command(tiny)) == 0  # a rerun: every study is at its budget, every cell done
    log = capsys.readouterr().out
    assert "[tune] arcface trial" not in log and log.count("[skip]") == 16
    assert (out / "results.csv").read_bytes() == before
    (out / "results.csv").unlink()
    assert main(command(tiny, "--report-only")) == 0
    assert (out / "results.csv").read_bytes() == before


PROBE = """
import sys
from bench.cli import main
code = main(sys.argv[1:])
assert code == 2, code
for name in ("torch", "mxnet", "optuna", "cv2", "matplotlib"):
    assert name not in sys.modules, f"{name} was imported before the argument error"
"""

TESTS = str(ROOT / "tests")  # an existing folder without a profile
BAD = [
    (["tune"], "give exactly one of --dataset"),
    (["tune", "--data", "/nonexistent", "--epochs", "1", "--batch-size", "8"],
     "/nonexistent does not exist"),
    (["tune", "--data", TESTS], "give --epochs and --batch-size"),
    (["tune", "--dataset", "att_faces", "--trials", "0"], "--trials must be an integer >= 1"),
    (["tune", "--dataset", "att_faces", "--val-fraction", "1.5"],
     "--val-fraction must be in (0, 1)"),
    (["tune", "--dataset", "att_faces", "--val-pairs", "30"], "positive multiple of 20"),
    (["tune", "--dataset", "att_faces", "--final-seeds", "1", "1"],
     "--final-seeds must be distinct"),
    (["tune", "--dataset", "att_faces", "--sampler-seed", "-1"], "--sampler-seed must be"),
    (["tune", "--dataset", "att_faces", "--losses", "nosuch"], "unknown loss(es) nosuch"),
    (["tune", "--dataset", "att_faces", "--losses", "softmax", "--loss-args",
      "arcface:scale=auto"], "--loss-args names arcface"),
    (["tune", "--dataset", "att_faces", "--losses", "arcface", "--loss-args",
      "arcface:margin=9"], "'margin' must be"),
    (["tune", "--dataset", "att_faces", "--epochs", "0"], "epochs must be an integer >= 1"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_arguments_fail_before_any_framework(argv, message, tmp_path):
    # a check that let a bad argument through must not go on to prepare a real set
    argv = [*argv, "--shared", str(tmp_path / "no-shared")]
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], out.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()
