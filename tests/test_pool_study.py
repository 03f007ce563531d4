"""benchmarks/pool_study.py end to end on tiny models and a file task: it trains every row, pairs
each with standard on the labels alone, and writes what it measured."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import write_planets

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import pool_study  # noqa: E402


def _planets_config(tmp_path, data, dirs):
    """A config file of the planets file task on the tiny models (2 training steps)."""
    config = tmp_path / "planets.yaml"
    config.write_text(f"task:\n  name: file\n  path: {data}\n  fields: {{choices: options, label: answer}}\n"
                      f"teacher:\n  model: {{name: {dirs['qwen2']}}}\n  finetune: false\n"
                      f"student:\n  model: {{name: {dirs['llama']}}}\n  train: {{max_steps: 2, progress_bar: false}}\n"
                      "  eval: {max_new_tokens: 4}\nrationale: {k: 3}\n")
    return config


def test_pool_study_writes_every_row_with_both_intervals(tmp_path, tiny_model_dirs):
    data = write_planets(tmp_path)
    config = _planets_config(tmp_path, data, tiny_model_dirs)
    out = tmp_path / "results" / "pool_study"
    pool_study.main(["--dataset", "planets", "--config", str(config), "--labels", "5", "--pools", "4,100",
                     "--modes", "pool-label,pool-saliency,pool-random-words,pool-label@0.4,pool-label@0.4-random",
                     "--seeds-small", "2",
                     "--run-dir", str(tmp_path / "run"), "--out", str(out), "--section", "planets 5"])
    result = json.loads(out.with_suffix(".json").read_text())["datasets"]["planets 5"]
    assert [p["pool"] for p in result["points"]] == [0, 4, result["pool_available"]]
    last = result["points"][-1]
    assert set(last["rows"]) == {"pool-label", "pool-saliency", "pool-random-words", "pool-label@0.4",
                                 "pool-label@0.4-random", "gold-reference"}
    assert last["rows"]["pool-label"]["rows"] == 5 + result["pool_available"]
    assert last["rows"]["gold-reference"]["rows"] == 5 + result["pool_available"]
    for c in last["vs_standard"].values():
        assert c["seeds"] == 2 and c["two_level"][0] <= c["difference"] <= c["two_level"][1]
    assert set(last["vs_reference"]) == {"pool-label", "pool-saliency", "pool-random-words", "pool-label@0.4",
                                         "pool-label@0.4-random"}
    # pool-soft was not run; the thresholded mode is paired with the same mode on the whole pool, and with
    # its random control
    assert [(c["mode"], c["baseline"]) for c in last["pairs"]] == [
        ("pool-saliency", "pool-label"), ("pool-saliency", "pool-random-words"), ("pool-label@0.4", "pool-label"),
        ("pool-label@0.4", "pool-label@0.4-random")]
    kept, drawn = last["rows"]["pool-label@0.4"], last["rows"]["pool-label@0.4-random"]
    assert kept["min_confidence"] == 0.4 and kept["rows"] <= last["rows"]["pool-label"]["rows"]
    assert drawn["keep"] == "random" and drawn["rows"] == kept["rows"] and "keep" not in kept
    assert (tmp_path / "run" / f"pool{result['pool_available']}-min-0.4" / "students" / "pool-label").is_dir()
    assert all(c["seeds"] == 2 for c in last["vs_reference"].values())
    md = out.with_suffix(".md").read_text()
    assert "| 0 | standard | 2 |" in md and "pool-saliency vs pool-random-words" in md and "recovery" in md
    assert "pool-label vs gold-reference" in md and "| pool-label@0.4 (p >= 0.40) | 2 |" in md
    assert "| pool-label@0.4-random (as many as p >= 0.40 keeps, at random) | 2 |" in md
    # the cost over every invocation, read from the run folder: 2 standard + 2 x 6 rows x 2 pool sizes
    costs = result["costs"]
    assert costs["students"] == costs["evaluated"] == 2 + 2 * 6 * 2 and costs["eval_seconds"] > 0
    assert costs["teacher_reused"] == 0 and costs["teacher_questions"] == sum(
        q["n"] for q in json.loads((tmp_path / "run" / "teacher" / "metrics.json").read_text())["quality"].values())
    assert costs["teacher_seconds"] > 0 and f"{costs['students']} students, training" in md
    # a second invocation reuses everything and adds its (small) wall time to the first's
    pool_study.main(["--dataset", "planets", "--config", str(config), "--labels", "5", "--pools", "4,100",
                     "--modes", "pool-label", "--seeds-small", "2",
                     "--run-dir", str(tmp_path / "run"), "--out", str(out), "--section", "planets 5"])
    again = json.loads(out.with_suffix(".json").read_text())["datasets"]["planets 5"]
    assert again["times"].keys() == result["times"].keys()
    assert all(result["times"][k] <= again["times"][k] < result["times"][k] + 60 for k in result["times"])
    assert again["costs"] == costs and "per stage, over every invocation" in out.with_suffix(".md").read_text()


def test_variants_writes_each_row_against_standard_and_its_control(tmp_path, tiny_model_dirs):
    import variants

    data = write_planets(tmp_path)
    config = _planets_config(tmp_path, data, tiny_model_dirs)
    out = tmp_path / "results" / "variants"
    variants.main(["--dataset", "planets", "--config", str(config), "--labels", "6", "--seeds-small", "2",
                   "--set", "attribution.method=saliency", "--faithfulness", "4",
                   "--run-dir", str(tmp_path / "run"), "--out", str(out)])
    [point] = json.loads(out.with_suffix(".json").read_text())["datasets"]["planets"]["points"]
    assert list(point["rows"]) == list(variants.ROWS) and all(r["seeds"] == 2 for r in point["rows"].values())
    assert set(point["vs_control"]) == {"saliency", "saliency-after", "saliency-consistency", "contrast"}
    assert all(c is not None and c["seeds"] == 2 for c in point["vs_standard"].values())
    store = json.loads((tmp_path / "run" / "6-contrast" / "rationales" / "train.jsonl").read_text().splitlines()[0])
    assert store["attribution"]["contrast"] is True and store["attribution"]["method"] == "input_x_gradient"
    plain = json.loads((tmp_path / "run" / "6" / "rationales" / "train.jsonl").read_text().splitlines()[0])
    assert plain["attribution"]["method"] == "saliency"  # the other rows keep theirs (saliency cannot contrast)
    metrics = json.loads((tmp_path / "run" / "6-contrast" / "teacher" / "metrics.json").read_text())
    asked = json.loads((tmp_path / "run" / "6" / "teacher" / "metrics.json").read_text())
    assert metrics["reused_answers"] == sum(q["n"] for q in asked["quality"].values()) > 0  # the main folder's
    faith = point["faithfulness"]
    assert [faith[r]["method"] for r in ("saliency", "contrast")] == ["saliency", "input_x_gradient"]
    assert all(faith[r]["n"] + faith[r]["skipped"] == 4 for r in faith)
    for f in faith.values():  # the difference is the mean of the per-row differences it reports beside it
        c = f["comprehensiveness"]
        assert c["difference"]["mean"] == pytest.approx(c["saliency"] - c["random"], abs=2e-4)
    md = out.with_suffix(".md").read_text()
    assert "| contrast | input_x_gradient contrast | " in md
    assert "| 6 | saliency-after | 2 |" in md and "| 6 | random-consistency | 2 |" in md
    assert "Above both standard and its control" in md


def test_the_contrast_row_keeps_the_teacher_answers_and_drops_other_runs_rationales(tmp_path, tiny_model_dirs):
    import argparse

    import variants

    config = _planets_config(tmp_path, write_planets(tmp_path), tiny_model_dirs)
    args = argparse.Namespace(config=str(config), dataset="planets", data="", max_test=None, run_dir="runs/v",
                              contrast_method="input_x_gradient",
                              set=["attribution.method=saliency", "attribution.reuse_rationales=[runs/other]",
                                   "teacher.reuse_answers=[runs/other]"])
    plain, contrast = (variants.configure(args, 6, row, [0]) for row in ("saliency", "contrast"))
    assert (plain.attribution.method, plain.attribution.reuse_rationales) == ("saliency", ["runs/other"])
    assert (contrast.attribution.method, contrast.attribution.contrast) == ("input_x_gradient", True)
    assert contrast.attribution.reuse_rationales == [] and contrast.run_dir == "runs/v/6-contrast"
    assert contrast.teacher.reuse_answers == ["runs/other", "runs/v/6"]


def test_recovery_counts_only_modes_with_as_many_seeds_as_the_reference():
    def diff(value, seeds):
        return {"difference": value, "examples": [0, 0], "two_level": [0, 0], "seed_t": [0, 0], "seeds": seeds}

    point = {"pool": 500, "vs_standard": {"pool-label": diff(6.0, 5), "pool-saliency": diff(9.0, 1),
                                          "gold-reference": diff(8.0, 5)},
             "pairs": [{"mode": "pool-soft", "baseline": "pool-label", **diff(-1.0, 5)}]}
    lines = pool_study.recovery_lines({"points": [{"pool": 0}, point]})
    assert lines[0] == ("- pool 500: best pool student pool-label +6.0 points (5 seeds); "
                        "gold reference +8.0 (5 seeds); recovery 0.75.")
    assert lines[1] == "- pool 500: not yet in the recovery (fewer seeds than the reference): pool-saliency (1 seed)."
    assert lines[2].startswith("- pool 500: pool-soft vs pool-label: -1.0 ")


def test_the_wall_time_says_which_invocations_it_covers(tmp_path):
    out = tmp_path / "pool_study"
    out.with_suffix(".json").write_text(json.dumps({"datasets": {
        "old": {"times": {"students": 5.0}}, "new": {"times": {"students": 7.0}, "times_cumulative": True}}}))
    args = [pool_study.argparse.Namespace(out=str(out), section=name) for name in ("old", "new", "fresh")]
    assert [pool_study.earlier_times(a) for a in args] == [({"students": 5.0}, False), ({"students": 7.0}, True),
                                                          ({}, True)]
    base = {"teacher": {"seconds_per_example": {}}, "times": {"students": 5.0}}
    lines = [pool_study.cost_lines({**base, **extra})[0]
             for extra in ({"times_cumulative": True}, {"times_cumulative": False}, {})]
    assert "over every invocation" in lines[0] and "not those before" in lines[1] and "this invocation" in lines[2]
