"""LFW pairs/people files -> .bin / train.rec, on a tiny generated LFW-style folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datagen import face_image
from PIL import Image

from bench.cli import main
from common.binfile import load_bin
from common.face_dataset import FaceRecordDataset
from common.images import decode
from common.lfw import pairs_to_bin, parse_pairs, people_to_rec

PEOPLE = {"Ann_A": 3, "Bob_B": 2, "Cy_C": 1, "Di_D": 4}


@pytest.fixture()
def lfw(tmp_path):
    images = tmp_path / "images"
    for k, (name, n) in enumerate(PEOPLE.items()):
        (images / name).mkdir(parents=True)
        for j in range(1, n + 1):
            size = (112, 112) if name != "Di_D" else (60, 50)  # Di_D must be resized
            Image.fromarray(face_image(k, j, size)).save(images / name / f"{name}_{j:04d}.jpg",
                                                         quality=80)
    return images


def write(path, text):
    path.write_text(text)
    return path


VIEW2 = """2\t2
Ann_A\t1\t2
Di_D\t1\t4
Ann_A\t3\tBob_B\t1
Cy_C\t1\tDi_D\t2
Bob_B\t1\t2
Ann_A\t2\t3
Bob_B\t2\tDi_D\t3
Ann_A\t1\tCy_C\t1
"""


def test_pairs_in_file_order_with_original_bytes(tmp_path, lfw):
    n = pairs_to_bin(lfw, write(tmp_path / "pairs.txt", VIEW2), tmp_path / "lfw.bin",
                     progress=False)
    bins, issame = load_bin(tmp_path / "lfw.bin")
    assert n == 8 and issame.tolist() == [True, True, False, False] * 2
    assert bins[0] == (lfw / "Ann_A" / "Ann_A_0001.jpg").read_bytes()  # 112x112: untouched
    assert bins[5] == (lfw / "Bob_B" / "Bob_B_0001.jpg").read_bytes()
    di = decode(bins[2])
    assert di.shape == (112, 112, 3) and bins[2] != (lfw / "Di_D" / "Di_D_0001.jpg").read_bytes()


def test_view1_single_count_header(tmp_path, lfw):
    text = "1\nAnn_A\t1\t2\nBob_B\t1\tDi_D\t1\n"
    pairs, folds = parse_pairs(write(tmp_path / "p.txt", text))
    assert folds == 1 and [p[4] for p in pairs] == [True, False]
    assert main(["lfw", "pairs", str(lfw), str(tmp_path / "p.txt"), str(tmp_path / "o.bin")]) == 0
    assert len(load_bin(tmp_path / "o.bin")[1]) == 2


def test_pairs_file_errors(tmp_path, lfw):
    with pytest.raises(ValueError, match="header says 2 x"):
        parse_pairs(write(tmp_path / "a.txt", VIEW2 + "Ann_A\t1\t2\n"))
    with pytest.raises(ValueError, match=r"line 2: expected 'name i j'"):
        parse_pairs(write(tmp_path / "b.txt", "1\nAnn_A\t1\n Bob_B 1 Di_D 1\n"))
    with pytest.raises(ValueError, match=r"line 2: expected a same pair"):
        parse_pairs(write(tmp_path / "c.txt", "1\nBob_B\t1\tDi_D\t1\nAnn_A\t1\t2\n"))
    with pytest.raises(FileNotFoundError, match="Ann_A_0009.jpg"):
        pairs_to_bin(lfw, write(tmp_path / "d.txt", "1\nAnn_A\t1\t9\nBob_B\t1\tDi_D\t1\n"),
                     tmp_path / "x.bin", progress=False)


def test_people_to_rec(tmp_path, lfw):
    people = write(tmp_path / "people.txt", "4\nAnn_A\t3\nBob_B\t2\nCy_C\t1\nDi_D\t4\n")
    s = people_to_rec(lfw, people, tmp_path / "rec", min_images=2, progress=False)
    assert s["labels"] == ["Ann_A", "Bob_B", "Di_D"]
    ds = FaceRecordDataset(tmp_path / "rec")
    assert ds.num_classes == 3 and len(ds) == 9
    assert ds.read_raw(0)[1] == (lfw / "Ann_A" / "Ann_A_0001.jpg").read_bytes()
    assert np.bincount(ds.labels).tolist() == [3, 2, 4]
    ds.close()
    assert json.loads((tmp_path / "rec" / "identities.json").read_text())["labels"][2] == "Di_D"
    with pytest.raises(ValueError, match="header says 5 people"):
        people_to_rec(lfw, write(tmp_path / "bad.txt", "5\nAnn_A\t3\n"), tmp_path / "r2",
                      progress=False)
    with pytest.raises(FileNotFoundError, match="Bob_B_0003.jpg"):
        people_to_rec(lfw, write(tmp_path / "m.txt", "1\nBob_B\t3\n"), tmp_path / "r3",
                      progress=False)
