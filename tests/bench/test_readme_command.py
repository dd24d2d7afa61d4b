"""`python -m bench readme` replaces only the marked block, from a results.csv."""

from __future__ import annotations

import pytest

from bench.cli import main

CSV = """# command: "python -m bench run"
# environment: {"git_commit": "abcdef1234567890", "cpu": "TestCPU"}
target,loss,backend,status,acc_mean,acc_std,img_per_s
lfw,arcface,pytorch,ok,0.9,0.01,100.0
lfw,arcface,gluon,ok,0.85,0.02,50.0
lfw,softmax,pytorch,nonfinite,,,
lfw,softmax,gluon,ok,0.7,0.03,60.0
"""


def test_block_is_replaced_and_the_rest_kept(tmp_path):
    csv = tmp_path / "results.csv"
    csv.write_text(CSV)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:x -->\nstale table\n<!-- /results:x -->\noutro\n")
    assert main(["readme", "--results", str(csv), "--readme", str(readme), "--name", "x"]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:x -->\n") and text.endswith("-->\noutro\n")
    assert "stale table" not in text
    assert "| arcface | 0.9000 +- 0.0100 | 0.8500 +- 0.0200 | +0.0500 | 100 | 50 |" in text
    assert "| softmax | nonfinite | 0.7000 +- 0.0300 | - | - | 60 |" in text
    assert "`abcdef123456` on TestCPU" in text


def test_missing_markers_is_a_clear_error(tmp_path, capsys):
    csv = tmp_path / "results.csv"
    csv.write_text(CSV)
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert main(["readme", "--results", str(csv), "--readme", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err
    assert readme.read_text() == "no markers\n"


@pytest.mark.parametrize("missing", ["results.csv"])
def test_missing_results_names_the_file(tmp_path, capsys, missing):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:synthetic -->\n<!-- /results:synthetic -->\n")
    assert main(["readme", "--results", str(tmp_path / missing), "--readme", str(readme)]) == 2
    assert missing in capsys.readouterr().err


def _real_folder(root, name, seeds, gaps, ranks):
    """A results/<set>/ folder as `bench real` writes it (only the columns the summary reads)."""
    folder = root / name
    folder.mkdir(parents=True)
    head = f"# seeds: {seeds}\n"
    results = ["loss,backend,seed,status"] + [
        f"{loss},{b},{s},ok" for loss, *_ in ranks for b in ("pytorch", "gluon") for s in seeds]
    (folder / "results.csv").write_text(head + "\n".join(results) + "\n")
    (folder / "gap.csv").write_text(
        head + "loss,diff_mean,diff_ci95_lo,diff_ci95_hi,ci_excludes_zero,mcnemar_pooled_p\n"
        + "".join(f"{g}\n" for g in gaps))
    (folder / "ranking.csv").write_text(
        head + "backend,rank,loss,mean,sd\n" + "".join(
            f"{b},{rank},{loss},{mean},{sd}\n" for loss, rank, mean, sd in ranks
            for b in ("pytorch", "gluon")))
    return folder


def test_real_block_summarises_each_set(tmp_path):
    a = _real_folder(tmp_path, "att_faces", [0, 1, 2],
                     ["softmax,0.01,-0.02,0.04,false,0.5", "arcface,0.05,0.02,0.08,true,0.01"],
                     [("softmax", 1, 0.9, 0.01), ("arcface", 2, 0.8, 0.02)])
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- results:real -->\nstale block\n<!-- /results:real -->\nb\n")
    assert main(["readme", "--real", str(a), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "stale block" not in text and text.endswith("-->\nb\n")
    assert f"| [att_faces]({a.as_posix()}/results.md) | 12 of 12 (0 1 2) " \
           "| softmax 90.0 +- 1.0 (1 of 2 share rank 1) |" in text
    assert "| 1 of 2: arcface +5.00 [+2.00, +8.00] | 1 of 2 |" in text


def test_real_block_names_a_missing_table(tmp_path, capsys):
    a = _real_folder(tmp_path, "att_faces", [0], [], [("softmax", 1, 0.9, 0.0)])
    (a / "ranking.csv").unlink()
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:real -->\n<!-- /results:real -->\n")
    assert main(["readme", "--real", str(a), "--readme", str(readme)]) == 2
    assert "ranking.csv" in capsys.readouterr().err
    assert readme.read_text() == "<!-- results:real -->\n<!-- /results:real -->\n"
