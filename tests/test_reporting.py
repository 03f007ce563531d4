"""Report folder: per-mode statistics by hand, Markdown/CSV tables, the SVG chart, the files."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

import saliency_distill.reporting as reporting
from saliency_distill.errors import DataError
from saliency_distill.reporting import (
    accuracy_svg,
    aggregate,
    environment_info,
    markdown_table,
    write_csv,
    write_report,
    write_svg,
)
from saliency_distill.reporting.page import results_table
from saliency_distill.reporting.report import FILES

SVG = "{http://www.w3.org/2000/svg}"


def record(mode: str, seed: int, accuracy: float | None, ranked: float | None = None,
           seconds: float | None = 100.0) -> dict[str, Any]:
    return {"mode": mode, "seed": seed, "accuracy": accuracy, "ranked_accuracy": ranked, "n": 100,
            "train_seconds": seconds, "train_examples_per_s": 4.0}


@pytest.fixture
def records() -> list[dict[str, Any]]:
    return [
        record("standard", 0, 0.5, 0.55, 100.0),
        record("saliency", 0, 0.8, None, 300.0),
        record("standard", 1, 0.6, 0.65, 200.0),
        record("standard", 2, 0.7, None, 300.0),
    ]


def bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [el for el in root.iter(f"{SVG}rect") if el.get("class") == "bar"]


def texts(svg: str) -> list[str]:
    return ["".join(el.itertext()) for el in ET.fromstring(svg).iter(f"{SVG}text")]


# ---- aggregate ----

def test_aggregate_mean_and_sample_std(records):
    rows = aggregate(records)
    assert [r["mode"] for r in rows] == ["standard", "saliency"]  # order of first appearance
    standard = rows[0]
    assert standard["n_seeds"] == 3
    assert standard["accuracy_mean"] == pytest.approx(0.6)
    assert standard["accuracy_std"] == pytest.approx(0.1)  # ddof=1: sqrt((0.01 + 0 + 0.01) / 2)
    assert standard["train_seconds_mean"] == pytest.approx(200.0)
    assert standard["train_examples_per_s_mean"] == pytest.approx(4.0)


def test_aggregate_skips_none_and_single_seed_has_zero_std(records):
    standard, saliency = aggregate(records)
    # ranked accuracy of seed 2 is None: mean and std of the other two
    assert standard["ranked_accuracy_mean"] == pytest.approx(0.6)
    assert standard["ranked_accuracy_std"] == pytest.approx(0.0707106781)
    assert saliency["n_seeds"] == 1
    assert saliency["accuracy_mean"] == pytest.approx(0.8)
    assert saliency["accuracy_std"] is None  # one seed: no spread, and no "± 0.00" in the table
    assert saliency["ranked_accuracy_mean"] is None
    assert saliency["ranked_accuracy_std"] is None


def test_aggregate_custom_metrics_and_missing_fields():
    rows = aggregate([{"mode": "m", "seed": 0, "f1": 0.25}, {"mode": "m", "seed": 1, "f1": 0.75}], metrics=("f1",))
    assert rows == [{"mode": "m", "n_seeds": 2, "f1_mean": 0.5, "f1_std": pytest.approx(0.3535533906),
                     "train_seconds_mean": None, "train_examples_per_s_mean": None,
                     "validation_accuracy_mean": None}]
    assert aggregate([{"mode": "m", "seed": 0, "validation_accuracy": 0.5},
                      {"mode": "m", "seed": 1, "validation_accuracy": 0.75}])[0]["validation_accuracy_mean"] == 0.625
    assert aggregate([]) == []


@pytest.mark.parametrize("bad", [{"seed": 0, "accuracy": 0.5}, {"mode": "m", "accuracy": "high"},
                                 {"mode": "m", "accuracy": True}, {"mode": "m", "accuracy": float("nan")}])
def test_aggregate_rejects_bad_records(bad):
    with pytest.raises(DataError):
        aggregate([bad])


# ---- Markdown and CSV ----

def test_markdown_table(records):
    md = markdown_table(aggregate(records), teacher={"model": "big/teacher", "accuracy": 0.7}, title="CQA")
    lines = md.splitlines()
    assert lines[0] == "### CQA"
    assert "| mode | seeds | accuracy (%) mean ± std | ranked-choice accuracy (%) | train s |" in lines
    assert "| standard | 3 | 60.00 ± 10.00 | 60.00 ± 7.07 | 200.0 |" in lines
    assert "| **saliency** | 1 | **80.00** | n/a | 300.0 |" in lines
    assert lines[-1] == "Teacher (`big/teacher`) test accuracy: 70.00 %"


def test_the_ranked_choice_column_is_left_out_where_no_mode_has_it(records):
    plain = [{**r, "ranked_accuracy": None} for r in records]
    lines = markdown_table(aggregate(plain)).splitlines()
    assert lines[:2] == ["| mode | seeds | accuracy (%) mean ± std | train s |", "|---|---:|---:|---:|"]
    assert "| standard | 3 | 60.00 ± 10.00 | 200.0 |" in lines
    assert "ranked-choice" not in results_table(aggregate(plain), [])
    assert "ranked-choice" in results_table(aggregate(records), [])


def test_markdown_table_escapes_pipes_and_handles_no_results():
    md = markdown_table(aggregate([record("a|b", 0, None)]))
    assert "| a\\|b | 1 | n/a | 100.0 |" in md  # no ranked-choice column: no mode has one
    assert "**" not in md and "Teacher" not in md


def test_csv_round_trip(tmp_path, records):
    rows = aggregate(records)
    path = tmp_path / "out" / "results.csv"
    write_csv(path, rows)
    with open(path, newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert [r["mode"] for r in back] == ["standard", "saliency"]
    assert list(back[0]) == list(rows[0])
    assert float(back[0]["accuracy_std"]) == pytest.approx(0.1)
    assert int(back[1]["n_seeds"]) == 1
    assert back[1]["ranked_accuracy_mean"] == ""  # None
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temporary file left behind


# ---- SVG ----

def test_svg_has_one_bar_per_mode_with_heights_in_percent(records):
    svg = accuracy_svg(aggregate(records), "Accuracy", teacher_accuracy=0.7)
    found = bars(svg)
    assert len(found) == 2
    heights = [float(b.get("height")) for b in found]
    assert heights[1] / heights[0] == pytest.approx(0.8 / 0.6, rel=1e-3)
    labels = texts(svg)
    assert {"60.0", "80.0", "teacher 70.0%", "standard", "saliency", "Accuracy"} <= set(labels)
    assert {str(t) for t in range(0, 101, 10)} <= set(labels)  # y axis ticks
    root = ET.fromstring(svg)
    assert len([el for el in root.iter(f"{SVG}line") if el.get("class") == "teacher"]) == 1
    assert len([el for el in root.iter(f"{SVG}g") if el.get("class") == "errorbar"]) == 1  # saliency: std 0


def test_svg_escapes_text_and_wraps_long_names(tmp_path):
    rows = aggregate([record("a<b", 0, 0.3), record("x & y " * 10, 0, None)])
    svg = accuracy_svg(rows, 'title <with> "markup" & more')
    assert len(bars(svg)) == 2
    labels = texts(svg)
    assert "a<b" in labels and 'title <with> "markup" & more' in labels and "n/a" in labels
    assert "teacher" not in svg
    long_label = next(el for el in ET.fromstring(svg).iter(f"{SVG}text")
                      if el.get("class") == "mode" and "x & y" in "".join(el.itertext()))
    assert 1 < len(list(long_label)) <= 3 and "".join(long_label.itertext()).endswith("…")
    path = tmp_path / "a.svg"
    write_svg(path, svg)
    assert path.read_text(encoding="utf-8") == svg


def test_svg_without_rows_is_well_formed():
    assert bars(accuracy_svg([], "empty")) == []


# ---- report folder ----

def test_write_report_creates_all_files(tmp_path, records):
    analysis = {
        "gold_containment": {"multiple_choice": {"n": 300, "percent": 62.3}, "all": {"n": 400, "percent": None}},
        "teacher_containment": {"all": {"n": 400, "percent": 55.0}},
        "human_rationale": {"n": 300, "precision": 0.25, "recall": 0.38, "f1": 0.27},
    }
    env = {"python": "3.11.9", "packages": {"torch": "2.13.0"}}
    config = {"task": {"name": "cqa"}, "out": Path("runs/x"), "seeds": (0, 1, 2)}
    folder = write_report(tmp_path / "report", records, config=config, teacher={"model": "t", "accuracy": 0.7},
                          analysis=analysis, environment=env, title="CQA distillation")
    assert folder == tmp_path / "report"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["results.md", "results.csv", "accuracy.svg", "records.json", "significance.json", "config.yaml",
         "environment.json", "report.html"])
    assert sorted(FILES) == sorted(p.name for p in folder.iterdir())
    assert json.loads((folder / "records.json").read_text()) == records
    assert json.loads((folder / "environment.json").read_text()) == env
    assert yaml.safe_load((folder / "config.yaml").read_text()) == {
        "task": {"name": "cqa"}, "out": "runs/x", "seeds": [0, 1, 2]}
    assert len(bars((folder / "accuracy.svg").read_text())) == 2

    md = (folder / "results.md").read_text()
    assert md.startswith("# CQA distillation\n")
    assert "60.00 ± 10.00" in md and "**saliency**" in md
    assert "Teacher (`t`) test accuracy: 70.00 %" in md
    assert "- Gold answer contained in the rationale: 62.30 % of 300 (multiple-choice)\n" in md
    assert "- Teacher answer contained in the rationale: 55.00 % of 400 (all)\n" in md
    assert "(n = 300): precision 0.250, recall 0.380, F1 0.270" in md
    assert "  - torch: 2.13.0" in md
    block = md.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block)["task"] == {"name": "cqa"}


def test_write_report_tolerates_missing_sections(tmp_path, records):
    folder = write_report(tmp_path, records, config={}, teacher=None, analysis={"human_rationale": {}},
                          environment={}, title="t")
    md = (folder / "results.md").read_text()
    assert "Teacher" not in md and "(no analysis figures)" in md
    no_analysis = write_report(tmp_path / "b", records, config={}, teacher=None, analysis=None,
                               environment={}, title="t")
    assert "## Analysis" not in (no_analysis / "results.md").read_text()


def test_environment_info():
    env = environment_info()
    assert set(env) >= {"python", "platform", "machine", "processor", "cpu_count", "saliency_distill", "packages",
                        "date"}
    assert set(env["packages"]) == {"torch", "transformers", "accelerate", "peft", "datasets", "tokenizers",
                                    "safetensors"}
    assert all(isinstance(v, str) and v for v in env["packages"].values())
    json.dumps(env)  # JSON-able


def test_public_names():
    assert len(reporting.__all__) == len(set(reporting.__all__))
    for name in reporting.__all__:
        assert hasattr(reporting, name), name


def test_chance_and_majority_levels_reach_the_table_and_the_plot(tmp_path):
    from saliency_distill.data import Example
    from saliency_distill.reporting import reference_levels, write_report

    nli = ("entailment", "neutral", "contradiction")
    labels = ["neutral"] * 5 + ["entailment"] * 3 + ["contradiction"] * 2
    levels = reference_levels([Example(f"e{i}", {"premise": "p"}, lab, nli) for i, lab in enumerate(labels)])
    assert levels == pytest.approx({"chance": 1 / 3, "majority": 0.5})
    # per-question options: the majority is the most frequent gold position; 2 and 4 options mix
    qa = [Example("a", {"q": "x"}, "b", ("a", "b")), Example("b", {"q": "y"}, "d", ("c", "d")),
          Example("c", {"q": "z"}, "e", ("e", "f", "g", "h"))]
    assert reference_levels(qa) == pytest.approx({"chance": (0.5 + 0.5 + 0.25) / 3, "majority": 2 / 3})
    assert reference_levels([Example("s", {"q": "1+1"}, "( 1 + 1 )")]) == {}
    records = [{"mode": "standard", "seed": 0, "accuracy": 0.34, "n": 10}]
    folder = write_report(tmp_path / "report", records, config={}, teacher={"model": "t", "accuracy": 0.7, **levels},
                          analysis=None, environment={}, title="t")
    md = (folder / "results.md").read_text()
    assert "chance 33.33 %, majority class 50.00 % (a student near these learned nothing)" in md
    svg = (folder / "accuracy.svg").read_text()
    assert 'class="chance"' in svg and 'class="majority"' in svg and "majority class 50.0%" in svg
    assert "Chance: 33.33%, majority class: 50.00%" in (folder / "report.html").read_text()
