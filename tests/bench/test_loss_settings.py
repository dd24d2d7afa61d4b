"""A loss's own hyper-parameters from the command line to the maths, in both backends.

``--loss-args`` is parsed and checked without a framework (tests/bench/test_cli.py checks the
errors); a setting reaches ``build_loss`` in both backends, names the cell (its label, file,
hash and table row), and two settings of one loss are two rows of one table.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from bench.run import cell, loss_settings
from common import backends
from common.synthetic import generate


def test_parse_the_string_form():
    got = loss_settings.parse("arcface:margin=0.3,scale=32; cosface:margin=0.4;"
                              "arcface:easy_margin=True")
    assert got == {"arcface": {"margin": 0.3, "scale": 32, "easy_margin": True},
                   "cosface": {"margin": 0.4}}
    assert loss_settings.parse("") == {}


def test_parse_json_and_toml_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"arcface": {"margin": 0.3}}))
    (tmp_path / "a.toml").write_text("[arcface]\nmargin = 0.3\n[cosface]\nscale = 30\n")
    assert loss_settings.parse(str(tmp_path / "a.json")) == {"arcface": {"margin": 0.3}}
    assert loss_settings.parse(str(tmp_path / "a.toml")) == {"arcface": {"margin": 0.3},
                                                              "cosface": {"scale": 30}}
    (tmp_path / "bad.toml").write_text("[arcface\n")
    with pytest.raises(ValueError, match="bad.toml is not valid toml"):
        loss_settings.parse(str(tmp_path / "bad.toml"))
    with pytest.raises(FileNotFoundError, match="cannot read"):
        loss_settings.parse(str(tmp_path / "missing.json"))


def test_labels_drop_defaults_and_round_trip():
    assert loss_settings.label("arcface", {"margin": 0.5, "scale": 64}) == "arcface"
    lab = loss_settings.label("arcface", {"scale": 32, "margin": 0.3})
    assert lab == "arcface[margin=0.3,scale=32.0]"
    assert loss_settings.split(lab) == ("arcface", {"margin": 0.3, "scale": 32.0})
    assert loss_settings.label("sphereface", {"margin": 2}) == "sphereface[margin=2]"
    assert loss_settings.label("arcface", {"easy_margin": True}) == "arcface[easy_margin=True]"
    with pytest.raises(ValueError, match="ArcFace: unknown hyper-parameter"):
        loss_settings.label("arcface", {"m": 0.3})


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_a_label_builds_the_loss_with_its_settings(backend):
    loss = cell.build_loss(backends.load(backend), "arcface[margin=0.3,scale=16.0]", 10, 8)
    assert (loss.margin, loss.scale) == (0.3, 16.0)
    joint = cell.build_loss(backends.load(backend), "cosface+center[lambda_=0.1,margin=0.2]",
                            10, 8)
    assert joint.lambda_ == 0.1 and joint.base.margin == 0.2


def test_two_margins_of_one_loss_are_two_rows(tmp_path):
    generate(tmp_path / "tiny", num_identities=6, images_per_identity=4, heldout_identities=4,
             num_pairs=20, image_size=32, difficulty=0.5, seed=3, progress=False)
    base = ["run", "--data", str(tmp_path / "tiny"), "--results", str(tmp_path / "results"),
            "--runs", str(tmp_path / "runs"),
            "--models", str(tmp_path / "models"), "--losses", "arcface", "--image-size", "32",
            "--width", "4", "--embedding-size", "16", "--epochs", "1", "--batch-size", "8",
            "--no-progress", "--no-plots"]
    assert main(base) == 0
    assert main([*base, "--loss-args", "arcface:margin=0.3,scale=16"]) == 0
    out = tmp_path / "results" / "tiny"
    table = pd.read_csv(out / "results.csv", comment="#")
    assert sorted(set(table["loss"])) == ["arcface", "arcface[margin=0.3,scale=16.0]"]
    assert len(table) == 4 and (table["status"] == "ok").all()
    rec = json.loads((out / "cells" / "arcface@margin=0.3@scale=16.0__gluon.json").read_text())
    plain = json.loads((out / "cells" / "arcface__gluon.json").read_text())
    assert rec["loss_args"] == {"margin": 0.3, "scale": 16.0} and "loss_args" not in plain
    assert rec["config_hash"] != plain["config_hash"]
    assert rec["family_hash"] == plain["family_hash"]  # one table holds both
    # the settings moved the numbers: not the default loss under another name
    moved = table.groupby("backend")["final_train_loss"].agg(lambda s: s.nunique())
    assert (moved == 2).all()
