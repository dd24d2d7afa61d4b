"""Photo folder -> train.rec + held-out .bin; dump; info; the CLI commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datagen import face_image, photo_folder

from bench.cli import main
from common.binfile import load_bin
from common.convert import convert_folder, describe, dump_rec, make_pairs
from common.face_dataset import FaceRecordDataset
from common.images import decode, read_image, to_size

COUNTS = (4, 3, 5, 4, 3, 4)


def test_folder_to_rec_and_heldout_bin(tmp_path):
    root = photo_folder(tmp_path / "photos", COUNTS)
    s = convert_folder(root, tmp_path / "out", size=24, heldout=2, num_pairs=20, seed=1,
                       progress=False)
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    assert set(split["train_labels"]).isdisjoint(split["heldout"])
    assert len(split["train_labels"]) + len(split["heldout"]) == len(COUNTS)
    ds = FaceRecordDataset(tmp_path / "out")
    assert ds.num_classes == 4 and len(ds) == s["train_images"]
    for name, label in split["train_labels"].items():  # every image of that identity, resized
        files = sorted((root / name).iterdir())
        idx = ds.identity_indices[label]
        assert len(idx) == len(files)
        expect = to_size(read_image(files[0]), 24).astype(int)
        assert np.abs(ds[idx[0]][0].astype(int) - expect).mean() < 6  # JPEG-close
    ds.close()
    bins, issame = load_bin(tmp_path / "out" / "heldout.bin")
    assert len(bins) == 40 and issame.tolist() == ([True] + [False]) * 10
    for k, (n1, _, n2, _, same) in enumerate(split["pair_list"]):
        assert same == issame[k] and (n1 == n2) == same and n1 in split["heldout"]


def test_conversion_is_deterministic(tmp_path):
    root = photo_folder(tmp_path / "photos", COUNTS)
    for out in ("a", "b"):
        convert_folder(root, tmp_path / out, size=24, heldout=3, num_pairs=20, seed=7,
                       progress=False)
    for name in ("train.rec", "train.idx", "property", "heldout.bin", "split.json"):
        assert (tmp_path / "a" / name).read_bytes() != b""
        if name != "split.json":
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_make_pairs_layout_and_limits():
    rng = np.random.default_rng(0)
    pairs = make_pairs([5, 5, 3], 40, rng)
    assert len(pairs) == 40 and len({(a, b) for a, b, _ in pairs}) == 40
    for f in range(10):
        fold = pairs[4 * f:4 * f + 4]
        assert [s for _, _, s in fold] == [True, True, False, False]
        assert all((a[0] == b[0]) == s and a != b for a, b, s in fold)
    with pytest.raises(ValueError, match="multiple of 20"):
        make_pairs([3, 3], 30, rng)
    with pytest.raises(ValueError, match="only 6"):
        make_pairs([3, 3], 20, rng)


def test_folder_errors(tmp_path):
    root = photo_folder(tmp_path / "photos", (3, 3, 3))
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="empty identity"):
        convert_folder(root, tmp_path / "o", progress=False)
    (root / "empty").rmdir()
    (root / "id1" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"broken.jpg: undecodable"):
        convert_folder(root, tmp_path / "o", heldout=0, progress=False)


def test_dump_and_info(tmp_path):
    root = photo_folder(tmp_path / "photos", COUNTS)
    convert_folder(root, tmp_path / "out", size=24, heldout=3, num_pairs=20, progress=False)
    n = dump_rec(tmp_path / "out", tmp_path / "dump", progress=False)
    with FaceRecordDataset(tmp_path / "out") as ds:
        files = sorted((tmp_path / "dump").rglob("*.jpg"))
        assert n == len(files) == len(ds)
        f = tmp_path / "dump" / str(int(ds.labels[2])) / f"{int(ds.keys[2])}.jpg"
        np.testing.assert_array_equal(decode(f.read_bytes()), ds[2][0])
    text = describe(tmp_path / "out")
    assert "insightface" in text and f"images: {len(ds)}" in text
    text = describe(tmp_path / "out" / "heldout.bin")
    assert "pairs: 20 (10 same, 10 different)" in text


def test_cli_commands(tmp_path, capsys):
    root = photo_folder(tmp_path / "photos", COUNTS)
    assert main(["convert", str(root), str(tmp_path / "o"), "--size", "24", "--heldout", "3",
                 "--pairs", "20"]) == 0
    assert main(["info", str(tmp_path / "o"), str(tmp_path / "o" / "heldout.bin")]) == 0
    assert "verification .bin" in capsys.readouterr().out
    assert main(["dump", str(tmp_path / "o"), str(tmp_path / "d")]) == 0
    assert main(["info", str(tmp_path / "missing.bin")]) == 2
    assert "missing.bin" in capsys.readouterr().err


def test_same_size_jpeg_keeps_original_bytes(tmp_path):
    from PIL import Image

    (tmp_path / "p" / "a").mkdir(parents=True)
    (tmp_path / "p" / "b").mkdir(parents=True)
    for who in ("a", "b"):
        Image.fromarray(face_image(1, 2, (24, 24))).save(tmp_path / "p" / who / "x.jpg",
                                                          quality=70)
    convert_folder(tmp_path / "p", tmp_path / "o", size=24, heldout=0, progress=False)
    with FaceRecordDataset(tmp_path / "o") as ds:
        raw = ds.read_raw(0)[1]
    assert raw == (tmp_path / "p" / "a" / "x.jpg").read_bytes()
