"""results/perf rendering: goals are judged from the ratios, and perf.csv renders back."""

from __future__ import annotations

from bench.perf.report import goal_of, read_rows, write_report


def row(section, case, impl, baseline, median, ratio):
    return {"section": section, "case": case, "impl": impl, "baseline": baseline, "repeats": 3,
            "median_s": median, "min_s": median, "max_s": median, "ratio": ratio}


ROWS = [
    row("heads", "torch C=10000", "torch linear+CE", "torch linear+CE", 0.1, 1.0),
    row("heads", "torch C=10000", "torch arcface", "torch linear+CE", 0.11, 1.10),
    row("heads", "gluon C=10000", "gluon arcface", "gluon Dense+SoftmaxCE", 0.15, 1.50),
    row("heads", "gluon C=1000", "gluon cosface", "gluon Dense+SoftmaxCE", 0.012, 1.20),
    row("verification", "6000 pairs", "common.verification", "literal", 0.1, 0.04),
]


def test_goal_limits_follow_the_issue():
    assert goal_of(ROWS[0]) is None  # the baseline itself
    assert goal_of(ROWS[1])[1] == 1.15 and goal_of(ROWS[3])[1] == 1.15  # every C
    assert goal_of(ROWS[4])[1] == 0.05


def test_report_marks_met_and_missed_and_renders_back(tmp_path):
    write_report([dict(r) for r in ROWS], tmp_path, sections=["heads", "verification"],
                 failures={}, quick=True)
    text = (tmp_path / "README.md").read_text()
    assert "## Goals" in text
    assert "| heads | <= 1.15x plain head | 3 | 1 | 2 | 1.500 (gluon C=10000, gluon arcface) |" \
        in text
    assert "| gluon C=1000 | gluon cosface |" in text and "<= 1.15x plain head: MISSED" in text
    back = read_rows(tmp_path / "perf.csv")
    assert [r["ratio"] for r in back] == [r["ratio"] for r in ROWS]
    assert back[2]["goal"] == "<= 1.15x plain head: MISSED"


def test_peers_are_compared_in_the_same_case(tmp_path):
    rows = [dict(r) for r in ROWS] + [
        row("heads", "torch C=10000", "PML ArcFaceLoss", "torch linear+CE", 0.2, 2.0),
        row("heads", "gluon C=10000", "gluonfr ArcLoss", "gluon Dense+SoftmaxCE", 0.12, 1.2),
    ]
    write_report(rows, tmp_path, sections=["heads"], failures={}, quick=True)
    text = (tmp_path / "README.md").read_text()
    assert "| heads | faster than the peer | 2 | 1 | 1 | 1.250 (gluon C=10000, gluon arcface " \
           "vs gluonfr ArcLoss) |" in text


def test_one_section_is_remeasured_and_the_others_kept(tmp_path):
    from bench.cli import main

    write_report([dict(r) for r in ROWS], tmp_path, sections=["heads", "verification"],
                 failures={}, quick=False)
    assert main(["perf", "--quick", "--sections", "verification", "--out", str(tmp_path)]) == 0
    back = read_rows(tmp_path / "perf.csv")
    heads = [r for r in back if r["section"] == "heads"]
    ver = [r for r in back if r["section"] == "verification"]
    assert [r["ratio"] for r in heads] == [r["ratio"] for r in ROWS[:4]]
    assert ver and all(r["measured"] for r in ver) and not any(r["case"] == "6000 pairs"
                                                                 for r in ver)
    text = (tmp_path / "README.md").read_text()
    assert text.index("## heads") < text.index("## verification")
    # the kept rows carry the commit of the file they came from, the new ones their own
    assert text.count("Measured at commit") == 2 and all(r["measured"] for r in heads)


def test_cases_filter_remeasures_only_matching_training_rows(tmp_path, capsys):
    from bench.cli import main

    old = [row("training", "smallcnn b16 32px", "torch", "torch", 0.5, 1.0),
           row("training", "smallcnn b16 32px", "gluon static_alloc", "torch", 0.6, 1.2),
           row("training", "other b8 32px", "torch", "torch", 9.0, 1.0)]
    write_report([dict(r) for r in old], tmp_path, sections=["training"], failures={},
                 quick=False)
    assert main(["perf", "--quick", "--sections", "training", "--cases", "smallcnn b16",
                 "--out", str(tmp_path)]) == 0
    back = read_rows(tmp_path / "perf.csv")
    assert [r["median_s"] for r in back if r["case"] == "other b8 32px"] == [9.0]
    fresh = [r for r in back if r["case"] == "smallcnn b16 32px"]
    assert len(fresh) == 4 and 0.5 not in [r["median_s"] for r in fresh]
    assert main(["perf", "--quick", "--sections", "data", "--cases", "x",
                 "--out", str(tmp_path)]) == 2  # data measures all its cases: a clear error
    assert "--cases applies to: training" in capsys.readouterr().err
