"""Every finished cell exports its model: ``<models>/<data set>/<cell stem>/``.

``python -m bench run`` on a tiny generated set (1 epoch, smallcnn width 4) for arcface in both
backends, then: each cell's folder holds model.npz, head.npz and model.json (the
framework-neutral format of ``import-model``); the model trained in one backend, rebuilt in
the other, embeds the verification images as its own backend does (max abs difference of
L2-normalised embeddings <= EMBED_ATOL = 1e-5; measured 1.8e-7 on this CPU, float32 rounding
of embeddings of norm ~100); the 10-fold accuracy of the exported model
(``common.verification.evaluate``, the harness's flip test), in either backend, is the cell
record's to 1e-4 (measured: equal); a rerun keeps the folders, ``--force`` rewrites them;
a missing or mismatched array is a one-line error naming the file and the array; a kill while
writing leaves no folder that reads as valid. The multi-process path exports too (rank 0,
class weights gathered from the shards).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.run import export
from bench.run.data import verification_sets
from common import backends
from common.images import normalize
from common.synthetic import generate
from common.verification import evaluate

# float32: the backends' kernels sum in other orders; measured max 1.8e-7 (1 and 2 processes)
EMBED_ATOL = 1e-5
ACC_ATOL = 1e-4
BACKENDS = ("pytorch", "gluon")
OTHER = {"pytorch": "gluon", "gluon": "pytorch"}


def command(root, *extra):
    return ["run", "--losses", "arcface", "--data", str(root / "tiny"),
            "--results", str(root / "results"), "--runs", str(root / "runs"),
            "--models", str(root / "models"), "--image-size", "32", "--width", "4",
            "--embedding-size", "16", "--epochs", "1", "--batch-size", "12", "--lr", "0.05",
            "--no-progress", "--no-plots", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cellmodels")
    generate(root / "tiny", num_identities=8, images_per_identity=6, heldout_identities=6,
             num_pairs=40, image_size=32, difficulty=0.5, seed=1, progress=False)
    assert main(command(root)) == 0
    return root


def record(root, backend, loss="arcface"):
    return json.loads((root / "results" / "tiny" / "cells" / f"{loss}__{backend}.json")
                      .read_text())


def embedder(model, backend):
    if backend == "gluon":
        import mxnet as mx

        return lambda x: model(mx.nd.array(x)).asnumpy()
    import torch

    def fn(x):
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    return fn


def unit(e):
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def targets(root):
    return verification_sets(sorted((root / "tiny").glob("*.bin")), 32)


def test_every_finished_cell_writes_its_model_folder(trained):
    table = pd.read_csv(trained / "results" / "tiny" / "results.csv", comment="#",
                        keep_default_na=False)
    assert list(table.columns)[-1] == "model_dir"
    for backend in BACKENDS:
        rec = record(trained, backend)
        folder = trained / "models" / "tiny" / f"arcface__{backend}"
        assert rec["status"] == "ok" and rec["model_dir"] == str(folder)
        assert set(table[table["backend"] == backend]["model_dir"]) == {str(folder)}
        assert {p.name for p in folder.iterdir()} == {"model.npz", "head.npz", "model.json"}
        params, meta = export.read_exported(folder)
        assert meta["backbone"] == "smallcnn" and meta["backbone_kwargs"] == {"width": 4}
        assert (meta["embedding_size"], meta["image_size"], meta["raw_input"]) == (16, 32, False)
        assert meta["input"]["normalize"] == "(x/255-0.5)/0.5"
        assert meta["backend"] == backend and meta["loss"] == meta["loss_name"] == "arcface"
        assert meta["loss_hyperparameters"] == {"scale": 64.0, "margin": 0.5,
                                                "easy_margin": False}
        assert meta["num_classes"] == 8 and meta["seed"] == 0 and meta["dataset"] == "tiny"
        assert set(meta["data_fingerprint"]) >= {"train.rec", "property"}
        assert meta["git_commit"] == rec["git_commit"] and meta["git_commit"]
        assert meta["config_hash"] == rec["config_hash"] and meta["config"] == rec["config"]
        assert meta["final_eval"] == rec["final_eval"]
        head, _ = export.read_head(folder)
        assert set(head) == {"weight"} and head["weight"].shape == (8, 16)
        fresh = backends.load("pytorch").backbones.build_backbone(
            "smallcnn", embedding_size=16, image_size=32, width=4)
        canonical = backends.load("pytorch").transfer.export_params(fresh)
        assert {k: v.shape for k, v in params.items()} == {k: v.shape
                                                           for k, v in canonical.items()}
        # the record is written after the folder: a cell reads as finished only with a model
        assert (folder / "model.json").stat().st_mtime_ns <= (
            trained / "results" / "tiny" / "cells" / f"arcface__{backend}.json").stat(
            ).st_mtime_ns


@pytest.mark.parametrize("trained_in", BACKENDS)
def test_the_exported_model_embeds_alike_in_both_backends(trained, trained_in):
    folder = trained / "models" / "tiny" / f"arcface__{trained_in}"
    params, meta = export.read_exported(folder)
    rec = record(trained, trained_in)
    models = {b: export.build_from_exported(params, meta, b) for b in BACKENDS}
    assert set(rec["final_eval"]) == set(targets(trained))
    for name, (images, issame) in targets(trained).items():
        x = normalize(images)
        own = unit(embedder(models[trained_in], trained_in)(x))
        other = unit(embedder(models[OTHER[trained_in]], OTHER[trained_in])(x))
        diff = float(np.abs(own - other).max())
        assert diff <= EMBED_ATOL, (name, diff)
        for backend in BACKENDS:  # the cell's accuracy, from the exported model, either backend
            result = evaluate(embedder(models[backend], backend), images, issame,
                              batch_size=min(200, len(images)), flip=meta["flip_test"],
                              progress=False)
            assert abs(result.accuracy_mean - rec["final_eval"][name]["acc_mean"]) <= ACC_ATOL, (
                name, backend, result.accuracy_mean, rec["final_eval"][name]["acc_mean"])


def test_the_loss_head_reloads_in_either_backend(trained):
    for trained_in in BACKENDS:
        head, meta = export.read_head(trained / "models" / "tiny" / f"arcface__{trained_in}")
        for backend in BACKENDS:
            loss = export.build_head_from_exported(head, meta, backend)
            state = backends.load(backend).losses.loss_state(loss)
            assert state.keys() == head.keys()
            np.testing.assert_array_equal(state["weight"], head["weight"])
            assert loss.margin == 0.5 and loss.scale == 64.0


def test_a_rerun_keeps_the_folders_and_force_rewrites_them(trained, capsys):
    folders = [trained / "models" / "tiny" / f"arcface__{b}" for b in BACKENDS]
    stamps = {p: p.stat().st_mtime_ns for f in folders for p in f.iterdir()}
    capsys.readouterr()
    assert main(command(trained)) == 0
    log = capsys.readouterr().out
    for f in folders:
        assert "finished with this config" in log and f"model {f}" in log
    assert {p: p.stat().st_mtime_ns for f in folders for p in f.iterdir()} == stamps
    weights = {f: export.read_exported(f)[0] for f in folders}
    assert main(command(trained, "--force")) == 0
    log = capsys.readouterr().out
    for backend, f in zip(BACKENDS, folders):
        line = next(x for x in log.splitlines() if x.startswith(f"[ok] arcface/{backend}:"))
        assert line.endswith(f"model {f}")
        assert all((f / n).stat().st_mtime_ns > stamps[f / n]
                   for n in ("model.npz", "head.npz", "model.json"))
        again, _ = export.read_exported(f)  # the same recipe: the same numbers
        for k, v in weights[f].items():
            np.testing.assert_array_equal(again[k], v, err_msg=k)


def test_a_missing_or_mismatched_array_names_the_file_and_the_array(trained, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(trained / "models" / "tiny" / "arcface__pytorch", folder)
    params, meta = export.read_exported(folder)
    name = sorted(params)[0]
    cases = {"missing": {k: v for k, v in params.items() if k != name},
             "shape mismatch": {**params, name: np.zeros((3, *params[name].shape))}}
    for what, arrays in cases.items():
        np.savez(folder / "model.npz", **arrays)
        got, meta = export.read_exported(folder)
        for backend in BACKENDS:
            with pytest.raises(ValueError) as info:
                export.build_from_exported(got, meta, backend)
            text = str(info.value)
            assert "\n" not in text and what in text, text
            assert str(folder / "model.npz") in text and name in text, text
    head, meta = export.read_head(folder)
    np.savez(folder / "head.npz", weight=head["weight"][:3])
    for backend in BACKENDS:
        with pytest.raises(ValueError) as info:
            export.build_head_from_exported(export.read_head(folder)[0], meta, backend)
        text = str(info.value)
        assert "\n" not in text and str(folder / "head.npz") in text and "weight" in text, text
    np.savez(folder / "head.npz", centres=head["weight"])
    with pytest.raises(ValueError, match=r"head\.npz: .*missing \['weight'\]"):
        export.build_head_from_exported(export.read_head(folder)[0], meta, "pytorch")
    (folder / "model.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"model\.npz: not a readable \.npz"):
        export.read_exported(folder)
    (folder / "head.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"head\.npz"):
        export.read_head(folder)


def test_a_kill_while_writing_leaves_no_folder_that_reads_as_valid(trained, tmp_path,
                                                                   monkeypatch):
    folder = tmp_path / "m"
    shutil.copytree(trained / "models" / "tiny" / "arcface__gluon", folder)
    params, meta = export.read_exported(folder)
    head, _ = export.read_head(folder)
    real = export.atomic_write_bytes

    def dies_at_head(path, data):
        if path.name == "head.npz":
            raise KeyboardInterrupt("killed")
        real(path, data)

    monkeypatch.setattr(export, "atomic_write_bytes", dies_at_head)
    with pytest.raises(KeyboardInterrupt):
        export.write_exported(folder, params, dict(meta, seed=1), extra={"head.npz": head})
    with pytest.raises(FileNotFoundError, match="model.json"):
        export.read_exported(folder)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(export, "atomic_write_bytes", real)
    export.write_exported(folder, params, dict(meta, seed=1), extra={"head.npz": head})
    assert export.read_exported(folder)[1]["seed"] == 1


def test_a_folder_written_before_the_cell_models_still_reads(trained, tmp_path):
    """The import-model layout as it was: np.savez + json, no format/loss keys."""
    params, _ = export.read_exported(trained / "models" / "tiny" / "arcface__pytorch")
    old = tmp_path / "old"
    old.mkdir()
    np.savez(old / "model.npz", **params)
    (old / "model.json").write_text(json.dumps(
        {"backbone": "smallcnn", "embedding_size": 16, "image_size": 32,
         "backend": "mxnet-insightface", "backbone_kwargs": {"width": 4}, "raw_input": False}))
    got, meta = export.read_exported(old)
    model = export.build_from_exported(got, meta, "torch")
    x = normalize(next(iter(targets(trained).values()))[0][:4])
    ref = export.build_from_exported(params, meta, "gluon")
    diff = np.abs(unit(embedder(model, "pytorch")(x)) - unit(embedder(ref, "gluon")(x)))
    assert diff.max() <= EMBED_ATOL
    with pytest.raises(ValueError, match="no loss head"):
        export.read_head(old)


def test_a_two_process_cell_exports_the_gathered_model(trained):
    root = trained
    assert main([*command(root, "--backends", "pytorch", "--nproc", "2", "--batch-size", "8"),
                 "--results", str(root / "results2"), "--models", str(root / "models2")]) == 0
    rec = json.loads((root / "results2" / "tiny" / "cells" / "arcface__pytorch.json")
                     .read_text())
    assert rec["status"] == "ok" and rec["nproc"] == 2
    folder = root / "models2" / "tiny" / "arcface__pytorch"
    assert rec["model_dir"] == str(folder)
    params, meta = export.read_exported(folder)
    head, _ = export.read_head(folder)
    assert head["weight"].shape == (8, 16) and meta["config"]["nproc"] == 2
    models = {b: export.build_from_exported(params, meta, b) for b in BACKENDS}
    for name, (images, issame) in targets(root).items():
        x = normalize(images)
        diff = np.abs(unit(embedder(models["pytorch"], "pytorch")(x))
                      - unit(embedder(models["gluon"], "gluon")(x))).max()
        assert diff <= EMBED_ATOL, (name, diff)
        result = evaluate(embedder(models["pytorch"], "pytorch"), images, issame,
                          batch_size=min(200, len(images)), flip=True, progress=False)
        assert abs(result.accuracy_mean - rec["final_eval"][name]["acc_mean"]) <= ACC_ATOL
    for backend in BACKENDS:
        export.build_head_from_exported(head, meta, backend)
