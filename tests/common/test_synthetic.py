"""Synthetic faces: InsightFace layout, determinism, difficulty knob, identities separable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.binfile import decode_bin, load_bin
from common.face_dataset import FaceRecordDataset
from common.synthetic import generate, identity_params, render_face

SMALL = dict(num_identities=4, images_per_identity=4, num_pairs=20, heldout_identities=3,
             image_size=48, seed=11, progress=False)


def test_layout_and_determinism(tmp_path):
    m = generate(tmp_path / "a", **SMALL)
    generate(tmp_path / "b", **SMALL)
    for name in ("train.rec", "train.idx", "property", "lfw.bin", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ds = FaceRecordDataset(tmp_path / "a")
    assert ds.layout == "insightface" and ds.num_classes == 4 and len(ds) == 16
    assert ds[0][0].shape == (48, 48, 3)
    ds.close()
    bins, issame = load_bin(tmp_path / "a" / "lfw.bin")
    assert len(bins) == 40 and issame.sum() == 10
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["difficulty"] == m["difficulty"] == 1.0
    assert all(p[0] >= 4 and p[2] >= 4 for p in manifest["pairs"])  # held-out only
    assert decode_bin(tmp_path / "a" / "lfw.bin").shape == (40, 48, 48, 3)
    other = generate(tmp_path / "c", **{**SMALL, "seed": 12, "num_pairs": 0})
    assert other["files"] == ["train.rec", "train.idx", "property"]
    assert (tmp_path / "c" / "train.rec").read_bytes() != (tmp_path / "a" / "train.rec").read_bytes(
    )


def spread(difficulty, ids=6, per=4):
    """(mean within-identity, mean between-identity) pixel distance."""
    imgs = np.array([[render_face(identity_params(np.random.default_rng([3, 0, k])),
                                  np.random.default_rng([3, 1, k, j]), 48, difficulty)
                      for j in range(per)] for k in range(ids)], dtype=float).reshape(ids, per, -1)
    within = np.mean([np.abs(imgs[k, i] - imgs[k, j]).mean() for k in range(ids)
                      for i in range(per) for j in range(i + 1, per)])
    between = np.mean([np.abs(imgs[a, 0] - imgs[b, 1]).mean() for a in range(ids)
                       for b in range(ids) if a != b])
    return within, between


def test_difficulty_scales_nuisance_and_identities_differ():
    w0, b0 = spread(0.0)
    w1, _ = spread(1.0)
    w2, _ = spread(2.0)
    assert w0 < w1 < w2  # the knob scales nuisance
    assert w0 < 0.5 * b0  # clean images of one identity resemble each other more than others


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="difficulty must be in"):
        generate(tmp_path, **{**SMALL, "difficulty": -1})
    with pytest.raises(ValueError, match="num_identities must be >= 1"):
        generate(tmp_path, **{**SMALL, "num_identities": 0})
