"""bench.report.tables: the one Markdown and CSV-with-metadata writer of every report."""

import csv
import io
import math

import pandas as pd
import pytest

from bench.perf.timing import time_call, time_runs
from bench.report.tables import (
    csv_text,
    csv_with_metadata,
    markdown_lines,
    markdown_table,
    metadata_lines,
    read_metadata,
)


def test_markdown_table_layout():
    text = markdown_table(["a", "b"], [[1, "x"], ["y", 2.5]])
    assert text == "| a | b |\n|---|---|\n| 1 | x |\n| y | 2.5 |"
    assert markdown_lines(["a", "b"], []) == ["| a | b |", "|---|---|"]


def test_markdown_alignment_row():
    lines = markdown_lines(["n", "l", "r", "c"], [["", "", "", ""]], align="-lrc")
    assert lines[1] == "|---|:---|---:|:---:|"
    assert markdown_lines(["x", "y"], [], align=["r", "-"])[1] == "|---:|---|"
    # an empty cell keeps its column: two spaces between the bars, as " | ".join gives
    assert lines[2] == "|  |  |  |  |"


@pytest.mark.parametrize("align", ["r", "rrr", "-x"])
def test_markdown_bad_alignment(align):
    with pytest.raises(ValueError, match="align"):
        markdown_lines(["a", "b"], [], align=align)


def test_markdown_row_of_another_length():
    with pytest.raises(ValueError, match="row 1: 1 cells for 2 columns"):
        markdown_lines(["a", "b"], [["1", "2"], ["3"]])


def test_markdown_escapes_pipes():
    lines = markdown_lines(["a | b", "c"], [["x|y", "`p | q`"]])
    assert lines[0] == "| a \\| b | c |"
    assert lines[2] == "| x\\|y | `p \\| q` |"
    # every line still has exactly one unescaped bar per column boundary
    for line in lines:
        assert line.replace("\\|", "").count("|") == 3


def test_markdown_rows_may_be_a_generator():
    rows = ([i, i * i] for i in range(3))
    assert markdown_table(["i", "i2"], rows).splitlines()[-1] == "| 2 | 4 |"


META = {"seeds": [0, 1, 2], "config": {"lr": 0.1, "backbone": "smallcnn"}, "command": "x | y",
        "dataset": "toy"}


def test_csv_header_round_trips_through_read_metadata(tmp_path):
    rows = [{"loss": "arcface", "acc": 0.1 + 0.2, "n": 3, "note": "a, b"},
            {"loss": "cosface", "acc": math.nan, "n": None}]
    text = csv_with_metadata(rows, ["loss", "acc", "n", "note"], META)
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert read_metadata(path) == META
    # keys sorted, values JSON with sorted keys: the bytes the reports have always written
    assert text.splitlines()[:4] == [
        '# command: "x | y"', '# config: {"backbone": "smallcnn", "lr": 0.1}',
        '# dataset: "toy"', "# seeds: [0, 1, 2]"]
    assert metadata_lines(META) == text.splitlines()[:4]
    table = pd.read_csv(path, comment="#")
    assert list(table.columns) == ["loss", "acc", "n", "note"]
    assert float(text.splitlines()[5].split(",")[1]) == 0.1 + 0.2  # repr: bit for bit
    assert math.isnan(table.acc[1]) and math.isnan(table.n[1])  # None and missing: empty
    assert table.note[0] == "a, b"


def test_csv_with_metadata_bytes():
    text = csv_with_metadata([{"b": 0.5, "a": "x", "extra": 1}], ["a", "b"], {"k": 1})
    assert text == "# k: 1\na,b\nx,0.5\n"


def test_read_metadata_stops_at_the_table_and_keeps_non_json(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("# note: not json\n# n: 2\na,b\n1,2\n# late: 3\n")
    assert read_metadata(path) == {"note": "not json", "n": 2}


def test_csv_text_own_comments_cells_and_line_ends():
    text = csv_text([{"x": 1.23456, "y": None}], ["x", "y"], comments=["# a=1"],
                    cell=lambda v: "" if v is None else f"{v:.3g}", lineterminator="\r\n")
    assert text == "# a=1\nx,y\r\n1.23,\r\n"
    assert list(csv.reader(io.StringIO(text.split("\n", 1)[1]))) == [["x", "y"], ["1.23", ""]]


def test_time_runs_and_time_call():
    calls = []
    times = time_runs(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    assert time_runs(lambda: calls.append(1), repeats=2) and len(calls) == 7  # no warm-up
    summary = time_call(lambda: None, repeats=3, warmup=0)
    assert summary["repeats"] == 3
    assert summary["min_s"] <= summary["median_s"] <= summary["max_s"]
