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
