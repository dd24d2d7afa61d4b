"""``bench eval --targets``: several verification .bin files in one pass (issue 25, part 3).

A tiny SmallCNN exported to a model folder and two small .bin files that share images: one
row per (target, backend), each target's metrics equal to a single-target eval of its .bin,
each shared image embedded once per backend, and the bad-target errors (before any framework
is imported, as tests/bench/test_cli.py's probe checks).
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datagen import face_image

from bench.cli import main
from bench.commands.import_model import write_exported
from common.binfile import decode_bin, write_bin
from common.images import encode_jpeg
from common.verification import to_network_input
from pytorch_impl.backbones import build_backbone
from pytorch_impl.transfer import export_params

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32
# every numeric column a target's row shares with a single-target eval of that .bin
METRICS = ("accuracy_mean", "accuracy_std", "val_mean", "val_std", "far_mean", "far_target",
           "eer", "auc", "xnorm", "threshold", "nrof_pairs", "nrof_folds",
           "accuracy_noflip_mean", "accuracy_noflip_std", "pair_images")


def _pairs(images: dict, keys: list[tuple]) -> tuple[list[bytes], list[bool]]:
    bins, issame = [], []
    for a, b in keys:
        bins += [images[a], images[b]]
        issame.append(a[0] == b[0])
    return bins, issame


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_targets")
    torch.manual_seed(0)
    model = build_backbone("smallcnn", embedding_size=8, image_size=SIZE, width=4).eval()
    images = {(i, j): encode_jpeg(face_image(i, j, (SIZE, SIZE)), 90)
              for i in range(6) for j in range(4)}
    with torch.no_grad():  # the embedding BN's statistics from the images: spread embeddings
        x = torch.from_numpy(to_network_input(np.stack(
            [face_image(i, j, (SIZE, SIZE)) for i in range(6) for j in range(4)])))
        h = model.fc(torch.flatten(model.bn(model.body(x)), 1))
        model.features.running_mean.copy_(h.mean(0))
        model.features.running_var.copy_(h.var(0))
    write_exported(root / "model", export_params(model),
                   {"backbone": "smallcnn", "embedding_size": 8, "image_size": SIZE,
                    "backend": "torch", "backbone_kwargs": {"width": 4}})
    rng = np.random.RandomState(0)

    def pair_keys(identities, n):
        keys = []
        for k in range(n):
            a = identities[k % len(identities)]
            if k % 2:  # a same pair, then a different one
                keys.append(((a, 0), (a, 1 + rng.randint(3))))
            else:
                b = identities[(k + 1 + rng.randint(len(identities) - 1)) % len(identities)]
                keys.append(((a, rng.randint(4)), (b, rng.randint(4))))
        return keys

    # identities 2 and 3 in both targets: most of their images are shared
    (root / "bins").mkdir()
    write_bin(root / "bins" / "alpha.bin", *_pairs(images, pair_keys([0, 1, 2, 3], 20)))
    write_bin(root / "bins" / "beta.bin", *_pairs(images, pair_keys([2, 3, 4, 5], 20)))
    return root


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _keys(bin_path: Path) -> set[bytes]:
    return {img.tobytes() for img in decode_bin(bin_path, image_size=SIZE)}


def test_targets_list_matches_single_target_evals(setup, tmp_path, capsys):
    """Batch size 1: both frameworks' float32 embedding of an image moves by ~1e-8 with the
    batch it is computed in (its size, for gluon also its position); a target after another
    embeds only the images not seen yet, so its batches differ from a single-target run's.
    One image per forward pass makes every pass the same in both runs, hence equal numbers."""
    root = setup
    bins = root / "bins"
    out = tmp_path / "multi"
    argv = ["eval", "--targets", "alpha,beta", "--target-dir", str(bins), "--model",
            str(root / "model"), "--batch-size", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = _rows(out / "metrics.csv")
    assert [(r["target"], r["backend"]) for r in rows] == [
        ("alpha", "gluon"), ("alpha", "torch"), ("beta", "gluon"), ("beta", "torch")]
    assert list(rows[0])[:2] == ["target", "backend"]
    assert {"threshold", "auc", "eer", "val_mean", "images_embedded", "pair_images"} <= set(rows[0])
    # each target's metrics are those of a single-target eval of its .bin
    for name in ("alpha", "beta"):
        single = tmp_path / name
        assert main(["eval", str(bins / f"{name}.bin"), "--model", str(root / "model"),
                     "--batch-size", "1", "--out", str(single), "--no-progress"]) == 0
        want = _rows(single / "metrics.csv")
        assert "target" not in want[0]  # the single-target layout is unchanged
        got = [r for r in rows if r["target"] == name]
        assert [r["backend"] for r in got] == [r["backend"] for r in want]
        for g, w in zip(got, want):
            for key in METRICS:
                np.testing.assert_allclose(float(g[key]), float(w[key]), rtol=1e-12, atol=1e-12,
                                           err_msg=f"{name}/{g['backend']} {key}")
            assert g["flip"] == w["flip"] == "True"
    capsys.readouterr()
    # shared images are embedded once per backend (with flip test: two inputs per image)
    alpha, beta = _keys(bins / "alpha.bin"), _keys(bins / "beta.bin")
    assert alpha & beta and beta - alpha  # the data does share (and not only share)
    for backend in ("gluon", "torch"):
        per = {r["target"]: int(r["images_embedded"]) for r in rows if r["backend"] == backend}
        assert per == {"alpha": 2 * len(alpha), "beta": 2 * len(beta - alpha)}
        pair_images = sum(int(r["pair_images"]) for r in rows if r["backend"] == backend)
        assert pair_images == 80 and sum(per.values()) == 2 * len(alpha | beta) < 2 * 80
    assert f"[torch] embedded {2 * len(alpha | beta)} network inputs for 80 pair images " \
           f"of 2 target(s) ({len(alpha | beta)} distinct images" in printed
    md = (out / "results.md").read_text()
    assert "| target | backend | accuracy |" in md and "| beta | torch |" in md
    assert f"| torch | 2 | 80 | {len(alpha | beta)} | {2 * len(alpha | beta)} |" in md
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "results.md", "roc.png"]


def test_targets_folder_and_paths_give_the_same_rows(setup, tmp_path):
    """The three spellings name the same files; in another order (other batches: float32
    embeddings within ~1e-8, see above), the same metrics within 1e-6."""
    root, bins = setup, setup / "bins"
    model = ["--model", str(root / "model"), "--backend", "torch", "--batch-size", "8",
             "--no-flip", "--no-progress"]
    assert main(["eval", "--targets", str(bins), *model, "--out", str(tmp_path / "a")]) == 0
    paths = f"{bins / 'beta.bin'},{bins / 'alpha.bin'},{bins / 'beta.bin'}"
    assert main(["eval", "--targets", paths, *model, "--out", str(tmp_path / "b")]) == 0
    by_folder, by_paths = _rows(tmp_path / "a" / "metrics.csv"), _rows(tmp_path / "b" /
                                                                       "metrics.csv")
    assert [r["target"] for r in by_folder] == ["alpha", "beta"]  # sorted
    assert [r["target"] for r in by_paths] == ["beta", "alpha"]  # as given, once each
    assert all(r["flip"] == "False" for r in by_folder)
    a = {r["target"]: r for r in by_folder}
    for r in by_paths:
        for key in METRICS[:-3]:
            np.testing.assert_allclose(float(r[key]), float(a[r["target"]][key]), rtol=1e-6,
                                       err_msg=key)


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return lines[-1]


def test_bad_targets_are_one_line_errors(setup, tmp_path, capsys):
    root, bins = setup, setup / "bins"
    model = ["--model", str(root / "model")]
    err = _error(["eval", "--targets", "alpha,cfp_fp", "--target-dir", str(bins), *model],
                 capsys)
    assert err == (f"error: --targets: target 'cfp_fp': no cfp_fp.bin in {bins.resolve()} "
                   "(--target-dir)")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no bins here")
    err = _error(["eval", "--targets", str(tmp_path / "empty"), *model], capsys)
    assert err == f"error: --targets: no *.bin in {tmp_path / 'empty'}"
    err = _error(["eval", "--targets", str(tmp_path / "nothing.bin"), *model], capsys)
    assert f"{tmp_path / 'nothing.bin'} does not exist" in err
    assert "exactly one of" in _error(["eval", *model], capsys)
    assert "got both" in _error(["eval", str(bins / "alpha.bin"), "--targets", "alpha", *model],
                                capsys)
    assert "--target-dir needs --targets" in _error(
        ["eval", str(bins / "alpha.bin"), "--target-dir", str(bins), *model], capsys)
    assert "no such folder" in _error(
        ["eval", "--targets", "alpha", "--target-dir", str(tmp_path / "nope"), *model], capsys)
    (tmp_path / "other").mkdir()
    write_bin(tmp_path / "other" / "alpha.bin", [b"x", b"y"], [True])
    assert "two targets named 'alpha'" in _error(
        ["eval", "--targets", f"{bins / 'alpha.bin'},{tmp_path / 'other' / 'alpha.bin'}",
         *model], capsys)


PROBE = """
import sys
from bench.cli import main
code = main(sys.argv[1:])
assert code == 2, code
for name in ("torch", "mxnet", "cv2", "matplotlib"):
    assert name not in sys.modules, f"{name} was imported before the argument error"
"""


@pytest.mark.parametrize("argv,message", [
    (["eval", "--targets", "lfw,nosuch", "--model", "m"], "target 'lfw': no lfw.bin in {cwd}"),
    (["eval", "--targets", ".", "--model", "m"], "no *.bin in ."),
])
def test_bad_target_fails_before_any_framework(argv, message, tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message.format(cwd=tmp_path.resolve()) in last, \
        out.stderr
