"""The multi-process bench path: ``bench run --nproc 2`` and ``bench scale-out`` on a tiny set.

Two spawned PyTorch ranks (gloo on CPU) train each cell through the same recipe as one process
(``bench.run.cell.train``); the record says so, counts the global batch's images, and leaves no
per-rank checkpoint behind.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from common.synthetic import generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("nproc")
    generate(root / "tiny", num_identities=8, images_per_identity=6, heldout_identities=4,
             num_pairs=20, image_size=32, difficulty=0.5, seed=2, progress=False)
    return root


def _common(root):
    return ["--data", str(root / "tiny"), "--image-size", "32", "--epochs", "1",
            "--batch-size", "8"]


def test_run_with_two_processes_writes_ok_cells(tiny):
    code = main(["run", *_common(tiny), "--backends", "pytorch", "--losses", "softmax,arcface",
                 "--nproc", "2", "--width", "4", "--embedding-size", "16", "--no-progress",
                 "--no-plots", "--results", str(tiny / "results"), "--runs", str(tiny / "runs"),
                 "--models", str(tiny / "models")])
    assert code == 0
    table = pd.read_csv(tiny / "results" / "tiny" / "results.csv", comment="#")
    assert sorted(table["loss"]) == ["arcface", "softmax"]
    assert (table["status"] == "ok").all()
    for loss in ("softmax", "arcface"):
        cell = json.loads((tiny / "results" / "tiny" / "cells" / f"{loss}__pytorch.json")
                          .read_text())
        assert cell["nproc"] == 2 and cell["config"]["nproc"] == 2
        # 48 images / batch 8 = 6 global steps, the first 3 untimed (warm-up); each rank saw
        # half of every batch and the record sums them
        assert cell["history"]["timing"]["images"] == 3 * 8
    assert not list((tiny / "runs" / "tiny").glob("*.ckpt.npz"))


def test_scale_out_compares_one_and_two_processes(tiny, capsys, tmp_path):
    out = tmp_path / "cmp.json"
    assert main(["scale-out", *_common(tiny), "--losses", "softmax", "--seeds", "2",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["nproc"], r["seed"]) for r in rows] == [(1, 0), (2, 0), (1, 1), (2, 1)]
    assert all(r["status"] == "ok" for r in rows)
    table = out.with_suffix(".md").read_text()
    assert "| softmax | lfw |" in table and "1 process vs 2 processes" in table
