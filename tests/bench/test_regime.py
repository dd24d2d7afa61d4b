"""The regime study: its grid, the step budget it trains with, the paired comparison with
softmax, and ``python -m bench regime`` end to end on a tiny grid (both backends, resumed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.regime import grid
from bench.regime.report import overtake_rows, versus_rows
from bench.run.cell import run_length
from bench.run.config import HarnessConfig, hashed
from common.sampler import EpochSampler


def test_labels_give_each_scaled_loss_both_rules():
    assert grid.labels(["softmax", "arcface", "sphereface", "cosface"], ["paper", "auto"]) == [
        "softmax", "arcface", "arcface[scale=auto]", "sphereface", "cosface",
        "cosface[scale=auto]"]
    assert grid.labels(["normface", "softmax"], ["auto"]) == ["normface[scale=auto]", "softmax"]


def test_parts_cover_the_grid_once_and_evenly():
    pts = grid.points((100, 1000, 4000), (100, 300, 1000), (0, 1, 2))
    assert len(pts) == 27 and pts[0] == grid.Point(100, 100, 0)
    assert [p.seed for p in pts[:9]] == [0] * 9  # seed-major
    for n in (1, 2, 4):
        parts = [grid.part_of(pts, (k, n)) for k in range(1, n + 1)]
        mine = [p for part in parts for p in part]
        assert len(mine) == len(pts) and set(mine) == set(pts)
        steps = [sum(p.steps for p in part) for part in parts]
        assert max(steps) - min(steps) <= 1000  # at most one big point apart


def test_steps_replace_epochs_in_the_hash():
    plain = hashed(HarnessConfig())
    assert "epochs" in plain and "steps" not in plain  # old cells keep their hashes
    budget = hashed(HarnessConfig(steps=300))
    assert budget["steps"] == 300 and "epochs" not in budget
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        HarnessConfig(steps=-1).check()


def test_grid_config_trains_the_budget_with_a_proportional_warmup(tmp_path):
    point = grid.Point(identities=1000, steps=300, seed=2)
    cfg = grid.harness_config(point, tmp_path / "ids1000", tmp_path / "res", "runs",
                              tmp_path / "models", ["softmax"], ["pytorch"], False, "cmd")
    labels = np.repeat(np.arange(1000), grid.IMAGES_PER_IDENTITY)
    sampler, epochs, schedule = run_length(cfg, EpochSampler(labels, cfg.batch_size, 2))
    assert epochs == 1 and len(sampler) == 300 and schedule.total_steps == 300
    assert schedule.warmup_steps == round(grid.WARMUP_FRACTION * 300)
    assert schedule(299) < 0.01 * cfg.lr  # the cosine reaches (almost) zero at the budget


def _rows(diffs: dict, seeds=(0, 1, 2)):
    """Rows of a fake study: softmax at 0.70 + seed noise, 'm' at softmax + diffs[steps]."""
    rows = []
    for steps, d in diffs.items():
        for s in seeds:
            base = 0.70 + 0.01 * s
            noise = 0.002 * (s - 1)
            for loss, acc in (("softmax", base), ("m", base + d + noise)):
                rows.append({"identities": 100, "steps": steps, "seed": s, "loss": loss,
                             "backend": "pytorch", "acc": acc})
    return rows


def test_versus_softmax_is_paired_by_seed_and_overtake_finds_the_first_budget():
    versus = versus_rows(_rows({100: -0.05, 300: 0.0005, 1000: 0.03}))
    assert [v["steps"] for v in versus] == [100, 300, 1000]
    by = {v["steps"]: v for v in versus}
    # paired: the seed offsets of softmax cancel, only the loss's own noise is left
    assert math.isclose(by[1000]["diff_mean"], 0.03, abs_tol=1e-12)
    assert by[1000]["ci_excludes_zero"] and by[100]["ci_excludes_zero"]
    assert not by[300]["ci_excludes_zero"]
    assert by[1000]["diff_ci95_lo"] > 0 > by[100]["diff_ci95_hi"]
    (o,) = overtake_rows(versus)
    assert o["overtakes_at_steps"] == 1000 and o["best_at_steps"] == 1000
    assert o["below_at_steps"] == "100"
    (never,) = overtake_rows(versus_rows(_rows({100: -0.05, 300: -0.04})))
    assert never["overtakes_at_steps"] is None and never["best_at_steps"] == 300


@pytest.fixture()
def small_grid(monkeypatch):
    """The grid's data and batch constants shrunk to test size (the recipe stays the same)."""
    for name, value in (("IMAGES_PER_IDENTITY", 6), ("HELDOUT", 6), ("PAIRS", 40),
                        ("BATCH", 12), ("GENERATED_SIZE", 32)):
        monkeypatch.setattr(grid, name, value)
    monkeypatch.setattr(grid, "BACKBONE", {"backbone": "smallcnn",
                                           "backbone_kwargs": {"width": 4},
                                           "embedding_size": 16})


def test_regime_end_to_end_both_backends_and_resume(small_grid, tmp_path, capsys):
    argv = ["regime", "--identities", "5", "--steps", "2,4", "--seeds", "0", "1",
            "--losses", "softmax,arcface", "--data-root", str(tmp_path / "data"),
            "--results", str(tmp_path / "regime"), "--runs", str(tmp_path / "runs"),
            "--models", str(tmp_path / "models"), "--no-progress"]
    assert main(argv) == 0
    out = tmp_path / "regime"
    cells = pd.read_csv(out / "regime.csv", comment="#")
    # 3 labels (softmax, arcface at s=64 and at scale=auto) x 2 backends x 2 steps x 2 seeds
    assert len(cells) == 24
    assert set(cells["loss"]) == {"softmax", "arcface", "arcface[scale=auto]"}
    versus = pd.read_csv(out / "versus_softmax.csv", comment="#")
    assert len(versus) == 2 * 2 * 2 and (versus["seeds"] == 2).all()
    for png in ("ids5.png", "versus_softmax.png"):
        assert (out / png).stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert "Cells finished: 24 of 24" in md and "## Where each loss overtakes softmax" in md
    # each cell trained exactly its budget
    for cell in (out / "cells" / "steps4" / "seed1" / "ids5" / "cells").glob("*.json"):
        import json

        assert json.loads(cell.read_text())["history"]["position"]["step"] == 4
    before = (out / "versus_softmax.csv").read_text()
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("[skip]") == 24
    assert main([*argv, "--report-only"]) == 0
    after = (out / "versus_softmax.csv").read_text()
    strip = lambda t: [ln for ln in t.splitlines() if not ln.startswith("# environment")]  # noqa: E731
    assert strip(after) == strip(before)


def test_a_regenerated_set_with_other_settings_is_refused(small_grid, tmp_path):
    from bench.commands.regime import ensure_data

    ensure_data(tmp_path, 5, 1.0, progress=False)
    with pytest.raises(ValueError, match="generated with other settings"):
        ensure_data(tmp_path, 5, 0.5, progress=False)
