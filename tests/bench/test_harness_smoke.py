"""The whole harness end to end on a tiny generated set: the default losses x both backends.

``python -m bench run`` in-process (the real CLI, data layer, losses, backbones, verification and
plots), then the same command again, which must skip every finished cell and rewrite identical
tables.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.cli import main
from bench.run.harness import default_losses, known_losses
from common.synthetic import generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    generate(root / "tiny", num_identities=8, images_per_identity=6, heldout_identities=6,
             num_pairs=40, image_size=32, difficulty=0.5, seed=1, progress=False)
    return root


def base_losses() -> list[str]:
    """Every registered loss but the joint '<margin>+<aux>' objectives (covered by
    tests/backends/test_train_parity), to keep the smoke test within a minute."""
    return [n for n in default_losses(known_losses()) if "+" not in n]


def command(root, *extra):
    return ["run", "--losses", ",".join(base_losses()), "--data", str(root / "tiny"),
            "--results", str(root / "results"),
            "--runs", str(root / "runs"),
            "--models", str(root / "models"), "--image-size", "32", "--width", "4",
            "--embedding-size", "32", "--epochs", "2", "--batch-size", "12", "--pk", "3",
            "--lr", "0.05", "--no-progress", *extra]


def test_every_loss_both_backends_end_to_end(tiny, capsys):
    assert main(command(tiny)) == 0
    out = tiny / "results" / "tiny"
    table = pd.read_csv(out / "results.csv", comment="#")
    losses = base_losses()
    assert len(table) == 2 * len(losses)
    assert set(table["loss"]) == set(losses)
    assert set(table["backend"]) == {"pytorch", "gluon"}
    assert (table["status"] == "ok").all(), table[table["status"] != "ok"]["message"].tolist()
    assert table["acc_mean"].between(0.0, 1.0).all()
    assert table["eer"].between(0.0, 1.0).all()
    assert (table["img_per_s"] > 0).all() and (table["wall_s"] > 0).all()
    assert (table["steps"] == 2 * (8 * 6 // 12)).all()  # 2 epochs of 4 batches
    # the difference column pairs each backend with the other one
    for _, r in table.iterrows():
        other = table[(table["loss"] == r["loss"]) & (table["backend"] != r["backend"])]
        assert math.isclose(r["acc_diff_vs_other"], r["acc_mean"] - other["acc_mean"].iloc[0])
    header = (out / "results.csv").read_text().splitlines()[:8]
    assert any(h.startswith("# environment:") and "git_commit" in h for h in header)
    assert any(h.startswith("# config:") and '"seed": 0' in h for h in header)
    md = (out / "results.md").read_text()
    assert "| arcface | gluon | ok |" in md
    for fig in ("curves.png", "accuracy_bars.png", "roc/lfw__arcface.png"):
        assert (out / fig).stat().st_size > 1000, fig
    assert not list((tiny / "runs" / "tiny").glob("*.ckpt.npz")), "finished cells keep no ckpt"

    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    assert main(command(tiny, "--no-plots")) == 0
    log = capsys.readouterr().out
    assert log.count("[skip]") == 2 * len(losses)
    assert (out / "results.csv").read_bytes() == before


def test_feature_space_figures(tiny):
    code = main(["features", "--data", str(tiny / "tiny"), "--results", str(tiny / "feat"),
                 "--losses", "softmax,center", "--identities", "4", "--image-size", "32",
                 "--width", "4", "--epochs", "1", "--batch-size", "12", "--no-progress"])
    assert code == 0
    for dim in (2, 3):
        assert (tiny / "feat" / "tiny" / f"features_{dim}d.png").stat().st_size > 5000


def test_the_commit_is_read_once_per_process(tmp_path):
    import subprocess

    from bench.report import results as res

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": __import__("os").environ["PATH"]}
    commit = ["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"]
    subprocess.run(commit, check=True, env=env)
    first = res.git_commit(tmp_path)
    subprocess.run(commit, check=True, env=env)  # a commit made while a long run is going
    assert res.git_commit(tmp_path) == first
    assert res._read_git_commit(tmp_path) != first


def test_dirty_means_changed_code_not_rewritten_results(tmp_path):
    import subprocess

    from bench.report import results as res

    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": __import__("os").environ["PATH"]}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "commit", "-q", "-m", "x"], check=True, env=env)
    (tmp_path / "results" / "table.csv").write_text("b\n")
    assert not res._read_git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert res._read_git_commit(tmp_path).endswith("-dirty")


def test_another_configuration_writes_beside_and_leaves_the_first_untouched(tiny, tmp_path,
                                                                             capsys):
    """Issue 29: a trial run with other settings must not replace finished results."""
    def argv(*extra):
        return ["run", "--losses", "softmax,arcface", "--data", str(tiny / "tiny"),
                "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
                "--models", str(tmp_path / "models"), "--image-size", "32", "--width", "4",
                "--embedding-size", "16", "--batch-size", "12", "--no-progress", "--no-plots",
                *extra]

    assert main(argv("--epochs", "1")) == 0
    first = tmp_path / "results" / "tiny"
    models = tmp_path / "models" / "tiny"
    snapshot = {p: p.read_bytes() for root in (first, models) for p in root.rglob("*")
                if p.is_file()}
    assert len([p for p in snapshot if p.suffix == ".json" and "cells" in p.parts]) == 4
    # another configuration's resume point in the shared runs folder
    decoy = tmp_path / "runs" / "tiny" / "arcface__pytorch-000000000000.ckpt.npz"
    decoy.write_bytes(b"not ours")
    capsys.readouterr()
    assert main(argv("--epochs", "2", "--losses", "arcface")) == 0
    log = capsys.readouterr().out
    assert decoy.read_bytes() == b"not ours"  # a finished cell deletes only its own
    assert not list(decoy.parent.glob("arcface__gluon-*.ckpt.npz"))
    beside = [p for p in (tmp_path / "results").iterdir() if p.name.startswith("tiny@")]
    assert len(beside) == 1 and f"writes beside it: tables and cells to {beside[0]}" in log
    assert f"tables in {beside[0]}" in log
    assert {p: p.read_bytes() for p in snapshot} == snapshot  # byte-identical
    assert sorted(p for root in (first, models) for p in root.rglob("*")
                  if p.is_file()) == sorted(snapshot)  # and nothing added there
    table = pd.read_csv(beside[0] / "results.csv", comment="#")
    assert sorted(table["backend"]) == ["gluon", "pytorch"] and set(table["loss"]) == {"arcface"}
    assert (tmp_path / "models" / beside[0].name / "arcface__pytorch" / "model.json").is_file()
    # the first configuration again: back in its own folder, every cell skipped
    capsys.readouterr()
    assert main(argv("--epochs", "1")) == 0
    assert capsys.readouterr().out.count("[skip]") == 4
    # another results root, the same models root: the models go beside the first ones
    other = argv("--epochs", "3", "--losses", "softmax")
    other[other.index("--results") + 1] = str(tmp_path / "results2")
    assert main(other) == 0
    log = capsys.readouterr().out
    assert "holds the models of another configuration" in log
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    moved = [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith("tiny@")]
    assert len(moved) == 2  # the --epochs 2 run's and this one's
