"""bench.tune.split: the validation identities are carved out of the training identities, disjoint
from the ones left to train on, deterministic by seed, recorded, and reused only while the
record matches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datagen import write_rec

from bench.tune.split import (
    RECORD,
    VAL_BIN,
    SplitSpec,
    carved_count,
    prepare_split,
    read_record,
)
from common.binfile import load_bin
from common.face_dataset import FaceRecordDataset

COUNTS = (4, 5, 3, 4, 6, 4, 1, 5, 4, 3, 4, 5, 4, 4, 3, 4, 5, 4, 4, 6)  # 20 ids, one of 1 image


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("split") / "src"
    encoded = write_rec(root, COUNTS, size=24)
    (root / "test.bin").write_bytes(b"never copied")  # the test pairs must stay out
    return root, encoded


def _images_by_identity(folder):
    with FaceRecordDataset(folder) as ds:
        return {k: [ds.read_raw(i)[1] for i in idx] for k, idx in ds.identity_indices.items()}


def test_validation_identities_are_disjoint_from_training_and_recorded(source, tmp_path):
    src, encoded = source
    record = prepare_split(src, tmp_path / "val", SplitSpec(fraction=0.2, seed=3))
    val, kept = record["val_labels"], record["train_labels"]
    assert len(val) == 4 and set(val).isdisjoint(kept)  # round(0.2 * 20)
    assert sorted(val + kept) == list(range(20)) and kept == sorted(kept)
    assert 6 not in val  # an identity of one image gives no same pair: never carved
    # the training folder: the kept identities relabelled 0..15 in order, bytes unchanged
    got = _images_by_identity(tmp_path / "val")
    assert sorted(got) == list(range(16))
    assert all(got[new] == encoded[old] for new, old in enumerate(kept))
    # the validation pairs: images of carved identities only, 10 folds of half same pairs
    bins, issame = load_bin(tmp_path / "val" / VAL_BIN)
    val_images = {img for k in val for img in encoded[k]}
    train_images = {img for k in kept for img in encoded[k]}
    assert set(bins) <= val_images and not set(bins) & train_images
    n = record["pairs"]
    same_pairs = sum(COUNTS[k] * (COUNTS[k] - 1) // 2 for k in val)
    assert len(bins) == 2 * n and n == min(1000, 2 * same_pairs) // 20 * 20 and n > 0
    folds = issame.reshape(10, -1)  # each fold: n/20 same pairs, then n/20 different ones
    assert folds[:, : n // 20].all() and not folds[:, n // 20:].any()
    for k, (a, ia, b, ib, same) in enumerate(record["pair_list"]):  # the .bin, as recorded
        assert a in val and b in val and (a == b) == same == issame[k]
        assert (bins[2 * k], bins[2 * k + 1]) == (encoded[a][ia], encoded[b][ib])
    assert sorted(p.name for p in (tmp_path / "val").glob("*.bin")) == [VAL_BIN]
    on_disk = json.loads((tmp_path / "val" / RECORD).read_text())
    assert on_disk == record
    assert on_disk["fraction"] == 0.2 and on_disk["seed"] == 3 and on_disk["max_pairs"] == 1000
    assert (on_disk["identities"], on_disk["val_identities"], on_disk["train_identities"]) == \
        (20, 4, 16)
    assert on_disk["val_images"] == sum(COUNTS[k] for k in val)
    assert on_disk["train_images"] == sum(COUNTS[k] for k in kept)
    assert set(on_disk["source_files"]) == {"train.rec", "train.idx", "property"}


def test_the_split_is_a_function_of_its_seed(source, tmp_path):
    src, _ = source
    a = prepare_split(src, tmp_path / "a", SplitSpec(seed=0))
    b = prepare_split(src, tmp_path / "b", SplitSpec(seed=0))
    c = prepare_split(src, tmp_path / "c", SplitSpec(seed=1))
    assert a["val_labels"] == b["val_labels"] and a["pair_list"] == b["pair_list"]
    for name in ("train.rec", "train.idx", "property", VAL_BIN):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert c["val_labels"] != a["val_labels"]


def test_a_matching_folder_is_reused_and_another_request_rebuilds_it(source, tmp_path):
    src, _ = source
    out = tmp_path / "val"
    prepare_split(src, out, SplitSpec(seed=0))
    stamp = (out / "train.rec").stat().st_mtime_ns
    (out / VAL_BIN).write_bytes(b"sentinel")  # a rebuild would overwrite it
    prepare_split(src, out, SplitSpec(seed=0))
    assert (out / VAL_BIN).read_bytes() == b"sentinel"
    assert (out / "train.rec").stat().st_mtime_ns == stamp  # pinned: same fingerprint
    prepare_split(src, out, SplitSpec(seed=0, fraction=0.3))
    assert (out / VAL_BIN).read_bytes() != b"sentinel"
    assert read_record(out)["val_identities"] == 6
    (out / RECORD).unlink()  # an unfinished build: rebuilt
    assert prepare_split(src, out, SplitSpec(seed=0, fraction=0.3))["val_identities"] == 6
    assert (out / RECORD).is_file()


def test_the_pair_limit_and_bad_requests(source, tmp_path):
    src, _ = source
    rec = prepare_split(src, tmp_path / "few", SplitSpec(seed=0, max_pairs=20))
    assert rec["pairs"] == 20 and len(load_bin(tmp_path / "few" / VAL_BIN)[0]) == 40
    with pytest.raises(ValueError, match=r"--val-fraction must be in \(0, 1\)"):
        prepare_split(src, tmp_path / "x", SplitSpec(fraction=1.0))
    with pytest.raises(ValueError, match="--val-pairs must be a positive multiple of 20"):
        prepare_split(src, tmp_path / "x", SplitSpec(max_pairs=30))
    with pytest.raises(ValueError, match="cannot be written over it"):
        prepare_split(src, src, SplitSpec())


@pytest.mark.parametrize("eligible, total, fraction, expect", [
    (20, 20, 0.2, 4), (20, 20, 0.01, 2), (3, 20, 0.5, 3), (10, 10, 0.9, 8), (2, 4, 0.2, 2)])
def test_carved_count(eligible, total, fraction, expect):
    assert carved_count(eligible, total, fraction) == expect


def test_carved_count_needs_two_to_carve_and_two_to_train():
    with pytest.raises(ValueError, match="needs >= 2 identities with >= 2 images"):
        carved_count(1, 10, 0.2)
    with pytest.raises(ValueError, match="and >= 2 left to train on"):
        carved_count(3, 3, 0.5)
    assert np.isscalar(carved_count(5, 5, 0.2))
