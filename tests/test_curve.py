"""The data-efficiency curve: nested subsets, one teacher run for every fraction, a table and a plot."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from conftest import write_planets

from saliency_distill.cli.main import main
from saliency_distill.data import Example
from saliency_distill.errors import ConfigError
from saliency_distill.reporting import accuracy_interval, curve_svg
from saliency_distill.study import curve_points, curve_table, nested_subsets


def _examples(n):
    return [Example(id=f"e{i}", fields={"question": f"q{i}"}, label="a") for i in range(n)]


def test_subsets_are_nested_seeded_and_rounded_up():
    examples = _examples(50)
    subsets = nested_subsets(examples, [0.5, 0.1, 1.0, 0.25], seed=3)
    assert list(subsets) == [0.1, 0.25, 0.5, 1.0]
    assert [len(s) for s in subsets.values()] == [5, 13, 25, 50]
    ids = [{ex.id for ex in s} for s in subsets.values()]
    assert all(small < big for small, big in zip(ids, ids[1:]))
    assert nested_subsets(examples, [0.1], seed=3)[0.1] == subsets[0.1]  # the same draw whatever else is asked
    assert nested_subsets(examples, [0.1], seed=4)[0.1] != subsets[0.1]
    assert [ex.id for ex in subsets[0.5]] == sorted((ex.id for ex in subsets[0.5]), key=lambda i: int(i[1:]))
    assert len(nested_subsets(_examples(3), [0.01], seed=0)[0.01]) == 1
    for bad in ([0.0], [1.5], []):
        with pytest.raises(ConfigError, match="each must be in"):
            nested_subsets(examples, bad, seed=0)


def test_points_have_seed_means_and_bootstrap_intervals():
    correct = {"0": {f"q{i}": i < 6 for i in range(10)}, "1": {f"q{i}": i < 8 for i in range(10)}}
    records = [{"fraction": 0.5, "mode": "standard", "seed": 0, "accuracy": 0.6},
               {"fraction": 0.5, "mode": "standard", "seed": 1, "accuracy": 0.8},
               {"fraction": 1.0, "mode": "standard", "seed": 0, "accuracy": 0.9},
               {"kind": "correctness", "fraction": 0.5, "mode": "standard", "correct": correct}]
    points = curve_points(records, n_resamples=500)
    assert [(p["fraction"], p["seeds"]) for p in points] == [(0.5, 2), (1.0, 1)]
    half = points[0]
    assert half["mean"] == pytest.approx(70.0)
    assert half["lower"] < 70.0 < half["upper"] and 0 <= half["lower"] and half["upper"] <= 100
    assert points[1]["lower"] is None  # no per-example predictions: no interval
    table = curve_table(points, {"0.5": 5, "1.0": 10}, "cqa")
    assert "| 50% | 5 | 70.0 [" in table and "| 100% | 10 | 90.0 |" in table
    # the interval of a mode that is always right is [100, 100]
    always = accuracy_interval({0: {"a": True, "b": True}})
    assert (always.difference, always.lower, always.upper) == (100.0, 100.0, 100.0)


def test_each_share_has_a_paired_difference_against_standard():
    ids = [f"q{i}" for i in range(40)]
    standard = {str(s): {q: i < 20 for i, q in enumerate(ids)} for s in (0, 1)}  # 50%
    better = {str(s): {q: i < 30 for i, q in enumerate(ids)} for s in (0, 1)}  # 75%: +25 points, same examples
    records = [{"fraction": 0.5, "mode": m, "seed": s, "accuracy": a}
               for m, a in (("standard", 0.5), ("saliency", 0.75)) for s in (0, 1)]
    records += [{"kind": "correctness", "fraction": 0.5, "mode": "standard", "correct": standard},
                {"kind": "correctness", "fraction": 0.5, "mode": "saliency", "correct": better},
                {"fraction": 1.0, "mode": "saliency", "seed": 0, "accuracy": 0.9}]
    cell = {(p["fraction"], p["mode"]): p for p in curve_points(records, n_resamples=500)}
    d = cell[(0.5, "saliency")]["vs"]["standard"]
    assert d["difference"] == pytest.approx(25.0) and 0 < d["lower"] < 25.0 < d["upper"]
    assert cell[(0.5, "standard")]["vs"] == {}  # not against itself
    assert cell[(1.0, "saliency")]["vs"] == {}  # no standard (nor predictions) at that share
    table = curve_table(list(cell.values()), {"0.5": 40, "1.0": 80}, "cqa")
    assert "minus `standard`" in table and "minus `random-words`" not in table  # no random-words run
    assert "| train share | saliency |" in table and "| 50% | +25.0 [" in table and "]* |" in table
    assert "| 100% | - |" in table
    # identical answers: a difference of exactly 0 and no star
    same = curve_points([r if r.get("mode") != "saliency" or r.get("kind") != "correctness" else {**r, "correct": standard}
                         for r in records], n_resamples=100)
    tied = next(p for p in same if (p["fraction"], p["mode"]) == (0.5, "saliency"))["vs"]["standard"]
    assert (tied["difference"], tied["lower"], tied["upper"], tied["excludes_zero"]) == (0.0, 0.0, 0.0, False)
    assert "| 50% | +0.0 [+0.0, +0.0] |" in curve_table(same, {"0.5": 40, "1.0": 80}, "cqa")


def test_curve_svg_is_one_line_and_band_per_mode():
    points = [{"fraction": f, "mode": m, "mean": 50 + 10 * f + i, "lower": 40 + i, "upper": 70 + i}
              for i, m in enumerate(["standard", "sal<iency>"]) for f in (0.25, 0.5, 1.0)]
    root = ET.fromstring(curve_svg(points, "a & b"))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2 and len(root.findall(f"{ns}polygon")) == 2
    assert len(root.findall(f"{ns}circle")) == 6
    assert "sal<iency>" in [t.text for t in root.iter(f"{ns}text")]


@pytest.fixture
def curve_args(tmp_path, tiny_model_dirs):
    data = write_planets(tmp_path)
    return [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={tiny_model_dirs['qwen2']}", "teacher.finetune=false",
            "progress=false", "rationale.k=3", f"student.model.name={tiny_model_dirs['llama']}",
            "student.modes=[standard,saliency]", "student.train.max_steps=2", "student.train.progress_bar=false",
            "student.eval.max_new_tokens=3"]


@pytest.fixture
def attributed(monkeypatch):
    """How many examples each call of the attribute stage attributed (tune binds its own import)."""
    import saliency_distill.rationale as rationale

    counts: list[int] = []
    real = rationale.attribute_split

    def counting(*args, **kw):
        out = real(*args, **kw)
        counts.append(out["new"])
        return out

    monkeypatch.setattr(rationale, "attribute_split", counting)
    return counts


def test_curve_command_reuses_one_teacher_run(tmp_path, curve_args, capsys, attributed):
    assert main(["-q", "curve", *curve_args, "--fractions", "0.5,1", "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert sum(attributed) == 17  # every train example attributed once, for both fractions
    report = tmp_path / "run" / "report"
    curve = json.loads((report / "curve.json").read_text())
    assert curve["fractions"] == [0.5, 1.0] and curve["train_examples"] == {"0.5": 9, "1.0": 17}
    assert {(p["fraction"], p["mode"]) for p in curve["points"]} == {(f, m) for f in (0.5, 1.0)
                                                                     for m in ("standard", "saliency")}
    assert all(p["lower"] is not None and p["lower"] <= p["mean"] <= p["upper"] for p in curve["points"])
    half = json.loads((tmp_path / "run" / "curve" / "p050" / "students" / "saliency" / "seed0" / "result.json")
                      .read_text())
    assert half["train_examples"] == 9 and half["train_sequences"] == 18
    full = json.loads((tmp_path / "run" / "students" / "saliency" / "seed0" / "result.json").read_text())
    assert full["train_examples"] == 17
    assert "| 50% | 9 |" in out and "curve.svg" in out
    ET.fromstring((report / "curve.svg").read_text())
    assert 'id="data-efficiency"' in (report / "report.html").read_text()  # the page was rewritten with it
    # a second call trains nothing and attributes nothing
    stamp = (tmp_path / "run" / "curve" / "p050" / "students" / "standard" / "seed0" / "result.json").stat().st_mtime
    assert main(["-q", "curve", *curve_args, "--fractions", "0.5,1", "--resamples", "200"]) == 0
    assert sum(attributed) == 17
    assert (tmp_path / "run" / "curve" / "p050" / "students" / "standard" / "seed0" / "result.json"
            ).stat().st_mtime == stamp


def test_curve_bad_fractions_is_one_line(curve_args, capsys):
    assert main(["-q", "curve", *curve_args, "--fractions", "0.5,2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "each must be in (0, 1]" in err[0]


# ---- tune: choices on validation --------------------------------------------------------------


def test_tune_chooses_on_validation_and_writes_a_runnable_config(tmp_path, curve_args, capsys):
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig

    data = tmp_path / "mine.jsonl"  # with an LLM-written rationale per row, mapped from "why"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({**r, "why": f"{r['answer']} has the larger number"}) + "\n" for r in rows))
    args = [a for a in curve_args if not a.startswith("student.modes")]
    args += ["student.modes=[standard,saliency,random-words,llm-rationale,soft-label]",
             "task.fields.llm_rationale=why"]
    assert main(["-q", "tune", *args, "--methods", "input_x_gradient,attention", "--targets", "teacher,gold",
                 "--ks", "1,2", "--alphas", "0.5,0.9", "--survivors", "2", "--validation-examples", "2",
                 "--train-examples", "8"]) == 0
    out = capsys.readouterr().out
    report = tmp_path / "run" / "report"
    tune = json.loads((report / "tune.json").read_text())
    assert [(f["method"], f["target"], f["k"]) for f in tune["faithfulness"]] == [
        (m, t, k) for m in ("input_x_gradient", "attention") for t in ("teacher", "gold") for k in (1.0, 2.0)]
    assert all(f["n"] == 2 and f["margin"] is not None for f in tune["faithfulness"])
    # each k scores its own words, re-chosen from the stored scores (the store holds rationale.k=3)
    assert [f["mean_words"] for f in tune["faithfulness"]] == [1.0, 2.0] * 4
    assert "| input_x_gradient | teacher | 2 (2 words) |" in (report / "tune.md").read_text()
    ranked = sorted(tune["faithfulness"], key=lambda f: -f["margin"])[:2]
    students = tune["students"]
    # standard, 2 survivors x 2 alphas, then llm-rationale (dataset rationales) and soft-label x 2 alphas each
    assert students[0]["name"] == "standard" and len(students) == 1 + 2 * 2 + 2 + 2
    assert [(s["method"], s["target"], s["k"]) for s in students[1:5:2]] == [(f["method"], f["target"], f["k"])
                                                                            for f in ranked]
    best = max(students[1:5], key=lambda s: s["accuracy"])
    assert tune["chosen"] == best and tune["train_examples"] == 8
    # only the survivors' (method, target) attribute train examples: the other two stop at validation
    attributed = {p.parent.parent.name for p in (tmp_path / "run" / "tune").glob("*/rationales/train.jsonl")}
    assert attributed == {f"{f['method']}-{f['target']}" for f in ranked}
    assert len(list((tmp_path / "run" / "tune").glob("*/rationales/validation.jsonl"))) == 4
    llm, soft = students[5:7], students[7:]
    assert [(s["name"], s["mode"], s["alpha"]) for s in llm + soft] == [
        ("llm-rationale-a0.5", "llm-rationale", 0.5), ("llm-rationale-a0.9", "llm-rationale", 0.9),
        ("soft-label-a0.5", "soft-label", 0.5), ("soft-label-a0.9", "soft-label", 0.9)]
    llm_alpha = max(llm, key=lambda s: s["accuracy"])["alpha"]
    assert tune["alpha_by_mode"] == {"saliency": best["alpha"], "random-words": best["alpha"],
                                     "llm-rationale": llm_alpha,
                                     "soft-label": max(soft, key=lambda s: s["accuracy"])["alpha"]}
    # every budget student was scored on validation examples only: the test split is never read
    validation = {json.loads(line)["id"] for line in (tmp_path / "run" / "data" / "validation.jsonl").read_text()
                  .splitlines()}
    for pred in (tmp_path / "run" / "tune" / "students").rglob("predictions.jsonl"):
        assert {json.loads(line)["id"] for line in pred.read_text().splitlines()} == validation
    tuned = load_config(ExperimentConfig, str(report / "tuned.yaml"), [])
    assert (tuned.attribution.method, tuned.attribution.target, tuned.rationale.k) == (
        best["method"], best["target"], best["k"])
    assert tuned.student.alpha_by_mode == tune["alpha_by_mode"]
    assert tuned.student.for_mode("saliency").alpha == best["alpha"]
    assert tuned.student.for_mode("llm-rationale").alpha == llm_alpha
    assert tuned.student.for_mode("standard").alpha == tuned.student.alpha  # the other modes keep student.alpha
    assert "validation" in tuned.teacher.splits
    assert "Chosen: attribution.method=" in out and "tuned.yaml" in out
    # a second call reuses every attribution, faithfulness figure and student
    stamp = (report / "tune.json").stat().st_mtime_ns
    assert main(["-q", "tune", *args, "--methods", "input_x_gradient,attention", "--targets", "teacher,gold",
                 "--ks", "1,2", "--alphas", "0.5,0.9", "--survivors", "2", "--validation-examples", "2",
                 "--train-examples", "8"]) == 0
    again = json.loads((report / "tune.json").read_text())
    assert again["chosen"] == tune["chosen"] and again["faithfulness"] == tune["faithfulness"]
    assert (report / "tune.json").stat().st_mtime_ns > stamp


def test_tune_bad_method_is_one_line(curve_args, capsys):
    assert main(["-q", "tune", *curve_args, "--methods", "gradient-magic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "choose from" in err[0] and "input_x_gradient" in err[0]


def test_the_report_says_whether_the_settings_were_tuned():
    from saliency_distill.reporting.report import settings_line

    config = {"attribution": {"method": "attention", "target": "gold"}, "rationale": {"k": 3}, "student": {"alpha": 0.9}}
    tune = {"chosen": {"method": "attention", "target": "gold", "k": 3.0, "alpha": 0.9},
            "faithfulness": [{}] * 4, "students": [{}] * 5, "timing": {"a": 10.0, "b": 20.4}}
    assert "chosen on the validation split by `saliency-distill tune`" in settings_line(config, tune)
    assert "4 candidates by faithfulness, 5 budget students; 30 s" in settings_line(config, tune)
    other = {**config, "student": {"alpha": 0.5}}
    assert "as set in the config (not tuned" in settings_line(other, tune)
    # tune writes alpha_by_mode: saliency's alpha is the one it chose, the others are listed
    by_mode = {**config, "student": {"alpha": 0.5, "alpha_by_mode": {"saliency": 0.9, "llm-rationale": 0.7}}}
    line = settings_line(by_mode, tune)
    assert "chosen on the validation split" in line and "alpha=0.9 (other modes: llm-rationale 0.7; the rest 0.5)" in line
    assert "as set in the config (not tuned" in settings_line(config, None)


def test_run_after_tune_reuses_its_attributions(tmp_path, curve_args, attributed):
    from saliency_distill.rationale import RationaleConfig, read_store, reselect

    tune = ["--methods", "input_x_gradient", "--targets", "gold", "--ks", "1,2", "--alphas", "0.9",
            "--survivors", "1", "--validation-examples", "2", "--train-examples", "8"]
    assert main(["-q", "tune", *curve_args, *tune]) == 0
    run = tmp_path / "run"
    chosen = json.loads((run / "report" / "tune.json").read_text())["chosen"]
    assert main(["-q", "attribute", str(run / "report" / "tuned.yaml")]) == 0
    assert attributed == [17 - 8]  # tune's 8 budget examples were copied, not attributed again
    _, tuned_rows = read_store(run / "tune" / "input_x_gradient-gold" / "rationales" / "train.jsonl")
    _, rows = read_store(run / "rationales" / "train.jsonl")
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows) == 17
    again = reselect(tuned_rows, RationaleConfig(k=chosen["k"]))  # the words re-chosen at the chosen k
    for r in tuned_rows:
        assert by_id[r["id"]]["words"] == r["words"] and by_id[r["id"]]["rationale"] == again[r["id"]]
        assert by_id[r["id"]]["teacher_correct"] is not None  # the same fields as the stage's own rows
    # another attribution setting (here its scope) reads none of tune's rows
    attributed.clear()
    assert main(["-q", "attribute", str(run / "report" / "tuned.yaml"), f"run_dir={tmp_path / 'other'}",
                 "attribution.scope=prompt"]) == 0
    assert attributed == [17]


def test_tune_copies_gold_rows_where_the_teacher_was_right(tmp_path, curve_args, monkeypatch):
    import saliency_distill.study.tune as tune_module
    from saliency_distill.rationale import read_store
    from saliency_distill.teacher.answer import read_answers

    data = tmp_path / "mine.jsonl"  # every other row lists the answer first, where the tiny teacher answers
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({**r, "options": r["options"][::-1] if i % 2 else r["options"]}) + "\n"
                            for i, r in enumerate(rows)))
    calls: list[tuple[str, int]] = []
    real = tune_module.attribute_split

    def counting(lm, prompter, examples, answers, attr_cfg, *args, **kw):
        out = real(lm, prompter, examples, answers, attr_cfg, *args, **kw)
        calls.append((attr_cfg.target, out["new"]))
        return out

    monkeypatch.setattr(tune_module, "attribute_split", counting)
    assert main(["-q", "tune", *curve_args, "--methods", "input_x_gradient", "--targets", "teacher,gold", "--ks", "1",
                 "--alphas", "0.9", "--survivors", "1", "--validation-examples", "4", "--train-examples", "8"]) == 0
    run = tmp_path / "run"
    answers = read_answers(run, "validation")
    folder = run / "tune"
    _, teacher_rows = read_store(folder / "input_x_gradient-teacher" / "rationales" / "validation.jsonl")
    _, gold_rows = read_store(folder / "input_x_gradient-gold" / "rationales" / "validation.jsonl")
    right = {r["id"] for r in teacher_rows if answers[r["id"]]["correct"]}
    n = len(teacher_rows)
    assert 0 < len(right) < n == len(gold_rows)
    assert calls[:2] == [("teacher", n), ("gold", n - len(right))]  # the agreeing rows were copied, not attributed
    strip = lambda r: {k: v for k, v in r.items() if k != "config_hash"}  # noqa: E731
    by_id = {r["id"]: strip(r) for r in gold_rows}
    assert all(by_id[r["id"]] == strip(r) for r in teacher_rows if r["id"] in right)
    assert all(by_id[r["id"]]["target"] != r["target"] for r in teacher_rows if r["id"] not in right)
