"""bench.real.data on tiny generated stand-ins (never ../shared): held-out identities stay out
of training, View 1's DevTest people are not trained on, folds are half same / half different."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datagen import face_image, photo_folder

from bench.real import data as real_data
from bench.real.data import (
    LfwView1Set,
    PhotoFolderSet,
    check_disjoint,
    heldout_count,
    interleave_folds,
    prepare,
    prepare_photo_folder,
)
from common.binfile import decode_bin, load_bin
from common.face_dataset import FaceRecordDataset
from common.images import encode_jpeg

SIZE = 24


def test_photo_folder_holds_out_a_quarter_and_pairs_only_use_them(tmp_path):
    counts = (4, 3, 5, 4, 3, 4, 4, 3)  # 8 identities -> 2 held out
    root = photo_folder(tmp_path / "photos", counts, formats=("pgm", "png"))
    spec = PhotoFolderSet(source="photos", pairs=20, seed=3)
    m = prepare_photo_folder(spec, root, tmp_path / "out", size=SIZE, progress=False)
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    held = set(m["heldout_identities"])
    assert len(held) == 2 and held.isdisjoint(split["train_labels"])
    assert m["train_identities"] == 6 and m["pairs"] == 20
    with FaceRecordDataset(tmp_path / "out") as ds:
        assert ds.num_classes == 6 and len(ds) == sum(
            len(list((root / n).iterdir())) for n in split["train_labels"])
        assert ds[0][0].shape == (SIZE, SIZE, 3)  # greyscale PGM -> RGB
    bins, issame = load_bin(tmp_path / "out" / spec.bin_name)
    assert issame.reshape(10, 2).tolist() == [[True, False]] * 10
    assert decode_bin(bins, image_size=SIZE).shape == (40, SIZE, SIZE, 3)
    for n1, _, n2, _, same in split["pair_list"]:
        assert n1 in held and n2 in held and (n1 == n2) == same


@pytest.mark.parametrize("n, expect", [(40, 10), (38, 10), (8, 2), (3, 2), (5, 2)])
def test_heldout_count_is_a_rounded_quarter_at_least_two(n, expect):
    assert heldout_count(n, 0.25) == expect


def test_heldout_count_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"heldout_fraction must be in \(0, 1\), got 1.2"):
        heldout_count(40, 1.2)
    with pytest.raises(ValueError, match="needs >= 3 identities"):
        heldout_count(2, 0.25)


def _pairs(n_same, n_diff):
    return ([(f"p{k}", 1, f"p{k}", 2, True) for k in range(n_same)]
            + [(f"p{k}", 1, f"q{k}", 1, False) for k in range(n_diff)])


def test_interleave_folds_makes_every_fold_half_same():
    out = interleave_folds(_pairs(20, 20))
    same = np.array([p[4] for p in out]).reshape(10, 4)
    assert same.tolist() == [[True, True, False, False]] * 10
    assert [p[0] for p in out[:4]] == ["p0", "p1", "p0", "p1"]  # file order within blocks
    with pytest.raises(ValueError, match="equal same/different counts"):
        interleave_folds(_pairs(20, 10))


# ---- a fake LFW tree: images/<Name>/<Name>_NNNN.jpg and view1/ lists -------------------------

TRAIN = {"Ann_A": 3, "Bob_B": 1, "Cid_C": 2, "Dee_D": 4}  # Bob has one image: not trained on
TEST = {"Eve_E": 3, "Fay_F": 2, "Gus_G": 2, "Hal_H": 3, "Ivy_I": 1}


def _fake_lfw(root, train=TRAIN, test=TEST):
    images = root / "lfw" / "images"
    for k, (name, n) in enumerate({**train, **test}.items()):
        (images / name).mkdir(parents=True, exist_ok=True)
        for j in range(1, n + 1):
            img = face_image(k, j, (SIZE, SIZE))
            (images / name / f"{name}_{j:04d}.jpg").write_bytes(encode_jpeg(img, 90))
    view1 = root / "lfw" / "view1"
    view1.mkdir(parents=True)
    for fname, people in (("peopleDevTrain.txt", train), ("peopleDevTest.txt", test)):
        (view1 / fname).write_text(f"{len(people)}\n"
                                   + "".join(f"{n}\t{c}\n" for n, c in people.items()))
    multi = [n for n, c in test.items() if c >= 2]
    same = [f"{multi[k % len(multi)]}\t1\t2" for k in range(10)]
    names = list(test)
    diff = [f"{names[k % 5]}\t1\t{names[(k + 1 + k // 5) % 5]}\t1" for k in range(10)]
    (view1 / "pairsDevTest.txt").write_text("10\n" + "\n".join(same + diff) + "\n")
    return root


def test_lfw_view1_trains_on_devtrain_and_no_test_person_is_trained_on(tmp_path, monkeypatch):
    shared = _fake_lfw(tmp_path / "shared")
    monkeypatch.setitem(real_data.DATASETS, "lfw_view1", LfwView1Set())
    out = prepare("lfw_view1", shared, tmp_path / "real", size=SIZE, progress=False)
    trained = json.loads((out / "identities.json").read_text())["labels"]
    assert trained == ["Ann_A", "Cid_C", "Dee_D"]  # >= 2 images, file order
    assert set(trained).isdisjoint(TEST)
    with FaceRecordDataset(out) as ds:
        assert ds.num_classes == 3 and len(ds) == 3 + 2 + 4
    bins, issame = load_bin(out / "lfw_devtest.bin")
    assert len(bins) == 40 and issame.reshape(10, 2).tolist() == [[True, False]] * 10
    manifest = json.loads((out / real_data.MANIFEST).read_text())
    assert manifest["train_identities"] == 3 and manifest["pairs"] == 20


def test_lfw_view1_refuses_a_split_that_leaks_test_people(tmp_path):
    shared = _fake_lfw(tmp_path / "shared", train={**TRAIN, "Eve_E": 3})
    with pytest.raises(ValueError, match="test people are in the training set.*Eve_E"):
        prepare("lfw_view1", shared, tmp_path / "real", size=SIZE, progress=False)
    assert not (tmp_path / "real" / "lfw_view1" / "train.rec").exists()


def test_check_disjoint_rejects_pairs_naming_people_outside_devtest(tmp_path):
    people = tmp_path / "test.txt"
    people.write_text("1\nEve_E\t3\n")
    with pytest.raises(ValueError, match="not in the DevTest list: Zed_Z"):
        check_disjoint(["Ann_A"], people, [("Eve_E", 1, "Zed_Z", 1, False)])


def test_prepare_skips_a_finished_folder_and_pins_mtimes(tmp_path, monkeypatch):
    photo_folder(tmp_path / "shared" / "photos", (5, 5, 5, 5), formats=("pgm",))
    monkeypatch.setitem(real_data.DATASETS, "att_faces", PhotoFolderSet("photos", pairs=20))
    out = prepare("att_faces", tmp_path / "shared", tmp_path / "real", size=SIZE,
                  progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert set(stamps.values()) == {real_data.PINNED_MTIME_NS}
    (out / "train.rec").write_bytes(b"sentinel")  # a rebuild would overwrite this
    prepare("att_faces", tmp_path / "shared", tmp_path / "real", size=SIZE, progress=False)
    assert (out / "train.rec").read_bytes() == b"sentinel"


def test_prepare_names_the_missing_source_and_unknown_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="source of att_faces not found"):
        prepare("att_faces", tmp_path / "nowhere", tmp_path / "real")
    with pytest.raises(ValueError, match="dataset must be one of"):
        prepare("mnist", tmp_path, tmp_path / "real")


def test_real_command_runs_seeds_writes_the_gap_and_resumes(tmp_path, capsys):
    import pandas as pd

    from bench.cli import main

    root = photo_folder(tmp_path / "photos", (5,) * 8, formats=("pgm", "jpg"))
    data = tmp_path / "toyfaces"
    prepare_photo_folder(PhotoFolderSet("photos", pairs=20), root, data, size=SIZE,
                         progress=False)
    argv = ["real", "--data", str(data), "--seeds", "0", "1", "--losses", "softmax",
            "--backbone", "smallcnn", "--image-size", "16", "--embedding-size", "8",
            "--epochs", "1", "--batch-size", "8", "--results", str(tmp_path / "res"),
            "--runs", str(tmp_path / "runs"), "--models", str(tmp_path / "models"), "--no-progress"]
    assert main(argv) == 0
    out = tmp_path / "res" / "toyfaces"
    rows = pd.read_csv(out / "results.csv", comment="#")
    assert sorted(zip(rows.backend, rows.seed)) == [("gluon", 0), ("gluon", 1),
                                                    ("pytorch", 0), ("pytorch", 1)]
    assert rows.status.eq("ok").all() and rows.acc_mean.between(0, 1).all()
    g = pd.read_csv(out / "gap.csv", comment="#").iloc[0]
    assert g.loss == "softmax" and g.seeds == "0 1"
    assert g.diff_mean == pytest.approx(
        rows[rows.backend == "pytorch"].acc_mean.mean() - rows[rows.backend == "gluon"]
        .acc_mean.mean(), abs=1e-12)
    assert g.mcnemar_torch_only + g.mcnemar_gluon_only >= 0 and 0 <= g.mcnemar_pooled_p <= 1
    cells = sorted(out.glob("seed*/toyfaces/cells/*.json"))
    stamps = [p.stat().st_mtime_ns for p in cells]
    assert len(cells) == 4 and (out / "curves.png").is_file()
    assert (out / "gap.png").stat().st_size > 5000
    capsys.readouterr()
    assert main(argv) == 0  # a rerun skips every finished cell
    assert capsys.readouterr().out.count("[skip]") == 4
    assert [p.stat().st_mtime_ns for p in cells] == stamps
    # a run of one seed (e.g. one of two processes) keeps the other seed in the tables
    i = argv.index("--seeds")
    one_seed = argv[:i] + ["--seeds", "1"] + argv[i + 3:]
    assert main(one_seed + ["--report-only"]) == 0
    rows = pd.read_csv(out / "results.csv", comment="#")
    assert sorted(set(rows.seed)) == [0, 1]
    assert pd.read_csv(out / "gap.csv", comment="#").iloc[0].seeds == "0 1"
    md = (out / "results.md").read_text()
    assert "Seeds [0, 1] (the command below ran seeds [1]" in md
    assert "cells finished: 4 of 4" in md
    # other settings into the same results folder are refused: its tables would be replaced
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = list(argv)
    other[other.index("--epochs") + 1] = "2"
    capsys.readouterr()
    assert main(other) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds cells of another configuration (differing in epochs: epochs=1 there)" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def _report_rows(seeds, accs):
    """Rows of a fake report: accs[(loss, backend)] = base accuracy, + 0.01 * seed."""
    return [{"dataset": "d", "target": "t", "loss": loss, "backend": backend, "seed": s,
             "status": "ok", "acc_mean": acc + 0.01 * s + (0.002 * s * s if loss != "softmax"
                                                          else 0.0),
             "acc_std": 0.01, "val": 0.5, "eer": 0.2, "final_train_loss": 1.0, "wall_s": 1.0}
            for (loss, backend), acc in accs.items() for s in seeds]


REPORT_META = {"config": {"epochs": 1}, "seeds": [0], "command": "cmd", "environment": {
    "git_commit": "abc", "cpu": "cpu", "python": "3.11", "packages": {"numpy": "1.23.5"}}}


def test_one_seed_gives_no_interval_no_ranking_and_no_nan(tmp_path):
    from bench.real import report

    accs = {("softmax", "pytorch"): 0.7, ("softmax", "gluon"): 0.71,
            ("arcface", "pytorch"): 0.75, ("arcface", "gluon"): 0.74}
    rows = _report_rows([0], accs)
    gaps, mcn = report.gap_rows(tmp_path, "d", rows)
    ranks = report.ranking_rows("d", rows)
    md = report.to_markdown("d", REPORT_META, rows, gaps, mcn, ranks, 4,
                            report.versus_rows("d", rows))
    assert "nan" not in md and "n/a (1 seed)" in md
    ranking = md[md.index("ranking (pytorch"):md.index("ranking (gluon")]
    assert "| n/a (1 seed) | arcface |" in ranking and "| n/a (1 seed) | softmax |" in ranking
    assert "| 1 | arcface |" not in ranking  # one seed ranks nothing first


def test_versus_reference_pairs_each_loss_with_softmax_by_seed(tmp_path):
    from bench.real import report

    accs = {("softmax", "pytorch"): 0.7, ("arcface", "pytorch"): 0.72,
            ("softmax", "gluon"): 0.7, ("arcface", "gluon"): 0.69}
    versus = report.versus_rows("d", _report_rows([0, 1, 2], accs))
    by = {v["backend"]: v for v in versus}
    assert set(by) == {"pytorch", "gluon"} and all(v["loss"] == "arcface" for v in versus)
    # differences 0.02 + 0.002 s^2 (s = 0, 1, 2): paired, the seed offset 0.01 s cancels
    assert by["pytorch"]["diff_mean"] == pytest.approx(0.02 + 0.002 * 5 / 3, abs=1e-12)
    assert by["pytorch"]["seeds_above"] == "3/3" and by["gluon"]["seeds_above"] == "0/3"
    assert by["pytorch"]["ci_excludes_zero"] == "true"
