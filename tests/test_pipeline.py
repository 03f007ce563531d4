"""The teach -> attribute -> analyze stages through the CLI, on a tiny teacher (a few seconds)."""

from __future__ import annotations

import json

import pytest
from conftest import write_planets

from saliency_distill.cli.main import main

TEMPLATE_WORDS = {"Question", "Answer", "Choices"}


@pytest.fixture
def run_args(tmp_path, tiny_model_dirs):
    data = write_planets(tmp_path)
    return [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={tiny_model_dirs['qwen2']}",
            "teacher.train.max_steps=3", "teacher.train.progress_bar=false", "progress=false", "rationale.k=3",
            f"student.model.name={tiny_model_dirs['llama']}", "student.modes=[standard,teacher-label,saliency]",
            "student.train.max_steps=2", "student.train.progress_bar=false", "student.eval.max_new_tokens=3"]


def _store(tmp_path):
    lines = (tmp_path / "run" / "rationales" / "train.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_teach_attribute_analyze(tmp_path, run_args, capsys):
    assert main(["-q", "run", *run_args]) == 0
    out = capsys.readouterr().out
    assert "teacher" in out and "gold answer in rationale" in out
    metrics = json.loads((tmp_path / "run" / "teacher" / "metrics.json").read_text())
    assert metrics["finetuned"] is True
    for split, n in (("train", 17), ("validation", 2), ("test", 5)):
        acc = metrics["accuracy"][split]
        assert acc["n"] == n and 0.0 <= acc["accuracy"] <= 1.0
    answers = [json.loads(line) for line in (tmp_path / "run" / "teacher" / "answers_test.jsonl").read_text().splitlines()]
    assert sum(a["correct"] for a in answers) / len(answers) == pytest.approx(metrics["accuracy"]["test"]["accuracy"])

    header, rows = _store(tmp_path)
    assert header["method"] == "input_x_gradient" and header["k"] == 3
    assert len(rows) == 17 and len({r["id"] for r in rows}) == 17
    by_id = {a["id"]: a for a in map(json.loads, (tmp_path / "run" / "teacher" / "answers_train.jsonl").read_text().splitlines())}
    train = map(json.loads, (tmp_path / "run" / "data" / "train.jsonl").read_text().splitlines())
    choices = {ex["id"]: ex["choices"] for ex in train}
    for row in rows:
        assert 1 <= len(row["rationale_words"]) <= 3
        assert not set(row["rationale_words"]) & TEMPLATE_WORDS
        content = {w[0] for w in row["words"]}
        assert set(row["rationale_words"]) <= content
        # the attributed target is the answer as the teacher gave it: its option letter (format auto)
        answer = by_id[row["id"]]
        letter = "ab"[choices[row["id"]].index(answer["answer"])]
        assert row["teacher_answer"] == answer["answer"] and row["target"] == answer["target"] == f"({letter})"
        # every word span points at the word in the prompt
        assert all(row["prompt"][s:e] == w for w, _, s, e in row["words"])
    summary = json.loads((tmp_path / "run" / "analysis" / "train.json").read_text())
    assert summary["n_rows"] == 17
    page = (tmp_path / "run" / "analysis" / "train.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Rationale" in page

    # students: one result per mode, the report with its table
    for mode in ("standard", "teacher-label", "saliency"):
        result = json.loads((tmp_path / "run" / "students" / mode / "seed0" / "result.json").read_text())
        assert result["n"] == 5 and result["train_steps"] == 2
        assert result["train_sequences"] == (34 if mode == "saliency" else 17)
    report = tmp_path / "run" / "report"
    table = (report / "results.md").read_text()
    assert all(m in table for m in ("standard", "teacher-label", "saliency"))
    assert "k=" in table.splitlines()[0] and "Settings: attribution " in table  # saliency explains
    # the paired bootstrap read each run's predictions.jsonl: 5 test examples x 1 seed
    assert "## Significance" in table and "- saliency vs standard: " in table and ", 5 pairs: the interval " in table
    assert (report / "accuracy.svg").is_file() and (report / "results.csv").is_file()
    # report.html: the teacher's answer distribution from metrics.json, a link to the heatmap page
    html_page = (report / "report.html").read_text()
    assert '<a class="heatmap" href="../analysis/train.html">train</a>' in html_page
    assert '<table class="distribution">' in html_page and "<h3>test split</h3>" in html_page
    assert "| mode" in out


def test_llm_rationale_mode_without_llm_rationales_is_refused(tmp_path, run_args, capsys):
    assert main(["-q", "train", *run_args, "student.modes=[llm-rationale]"]) == 2
    assert "mode llm-rationale needs LLM-written rationales" in capsys.readouterr().err


def test_attribute_resumes_without_duplicates(tmp_path, run_args, capsys):
    assert main(["-q", "attribute", *run_args]) == 0
    path = tmp_path / "run" / "rationales" / "train.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    # Simulate a kill after 5 rows, the 6th torn mid-write.
    path.write_text("".join(lines[:6]) + lines[6][:20])
    capsys.readouterr()
    assert main(["-q", "attribute", *run_args]) == 0
    assert "12 new" in capsys.readouterr().out
    header, rows = _store(tmp_path)
    assert len(rows) == 17 and len({r["id"] for r in rows}) == 17


def test_a_complete_store_is_reused_without_loading_the_teacher(tmp_path, run_args, capsys, monkeypatch):
    import saliency_distill.experiment as experiment

    assert main(["-q", "attribute", *run_args]) == 0

    def no_load(*args, **kwargs):
        raise AssertionError("the teacher was loaded though every rationale is in the store")

    monkeypatch.setattr(experiment, "load_model", no_load)
    capsys.readouterr()
    assert main(["-q", "attribute", *run_args]) == 0
    assert "0 new" in capsys.readouterr().out


def test_attribute_refuses_another_config_then_overwrites(tmp_path, run_args, capsys):
    assert main(["-q", "attribute", *run_args]) == 0
    recorded = (tmp_path / "run" / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["-q", "attribute", *run_args, "rationale.k=4"]) == 2
    err = capsys.readouterr().err
    assert "rationale store made under another config" in err and err.count("\n") == 1
    # the refused command rewrote nothing: the folder still says what made it
    assert (tmp_path / "run" / "config.yaml").read_text() == recorded
    assert main(["-q", "attribute", *run_args, "rationale.k=4", "--overwrite"]) == 0
    header, rows = _store(tmp_path)
    assert header["k"] == 4 and len(rows) == 17
    assert "k: 4" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["attribution.method=gradcam"], "unknown method 'gradcam'"),
        (["attribution.max_length=8", "attribution.target=gold", "teacher.finetune=false"],
         "prompt and answer are"),
        (["attribution.bf16=true", "attribution.method=integrated_gradients"], "bf16"),
    ],
)
def test_attribute_bad_input(tmp_path, run_args, capsys, extra, message):
    assert main(["-q", "attribute", *run_args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# Every key that changes a stage's output is part of its identity: changing it is refused (one
# line, exit 2) until --overwrite recomputes. Task keys are the data stage's (test_data.py).
IDENTITY = [
    ("teach", "teacher.model.dtype=bfloat16"),
    ("teach", "teacher.model.revision=v2"),
    ("teach", "teacher.format=text"),
    ("teach", "teacher.shots=1"),
    ("teach", "teacher.scoring=mean"),
    ("teach", "teacher.finetune=false"),
    ("teach", "teacher.calibration=contextual"),
    ("teach", "teacher.demonstrations=random"),
    ("teach", "teacher.demo_seed=3"),
    ("teach", "teacher.stop=['Human:']"),
    ("attribute", "teacher.model.dtype=bfloat16"),
    ("attribute", "teacher.format=text"),
    ("attribute", "teacher.shots=1"),
    ("attribute", "attribution.method=saliency"),
    ("attribute", "attribution.target=teacher"),
    ("attribute", "attribution.contrast=true"),
    ("attribute", "rationale.k=2"),
    ("attribute", "rationale.drop_stopwords=false"),
]


@pytest.mark.parametrize("command, change", IDENTITY)
def test_each_identity_key_is_refused_then_overwritten(tmp_path, run_args, capsys, command, change):
    if command == "attribute":  # a teacher that is not fine-tuned: attribute is then its own stage
        run_args = [*run_args, "teacher.finetune=false", "attribution.target=gold"]
    assert main(["-q", command, *run_args]) == 0
    capsys.readouterr()
    assert main(["-q", command, *run_args, change]) == 2
    err = capsys.readouterr().err
    assert "made under another config" in err and err.count("\n") == 1, err
    assert main(["-q", command, *run_args, change, "--overwrite"]) == 0
    assert main(["-q", command, *run_args, change]) == 0  # now it is this config's output: reused


def test_run_overwrite_replaces_only_what_another_config_made(tmp_path, run_args, capsys):
    args = [*run_args, "teacher.finetune=false", "attribution.target=gold"]
    assert main(["-q", "run", *args]) == 0
    students = tmp_path / "run" / "students"
    stamps = {m: (students / m / "seed0" / "result.json").stat().st_mtime_ns
              for m in ("standard", "teacher-label", "saliency")}
    store = (tmp_path / "run" / "rationales" / "train.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["-q", "run", *args, "student.alpha=0.7"]) == 2  # the saliency run was made at another alpha
    err = capsys.readouterr().err
    assert "student run saliency seed 0 made under another config" in err and err.count("\n") == 1
    assert main(["-q", "run", *args, "student.alpha=0.7", "--overwrite"]) == 0
    after = {m: (students / m / "seed0" / "result.json").stat().st_mtime_ns for m in stamps}
    # alpha weighs saliency's two losses only: the single-loss runs and the store are reused
    assert after["standard"] == stamps["standard"] and after["teacher-label"] == stamps["teacher-label"]
    assert after["saliency"] != stamps["saliency"]
    assert (tmp_path / "run" / "rationales" / "train.jsonl").stat().st_mtime_ns == store


def test_attribute_after_the_teacher_changed_says_which_stage_to_overwrite(tmp_path, run_args, capsys):
    assert main(["-q", "attribute", *run_args]) == 0  # fine-tuned teacher (the file task's default)
    capsys.readouterr()
    assert main(["-q", "attribute", *run_args, "teacher.model.dtype=bfloat16", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "teacher answers made under another config" in err and "run `saliency-distill teach`" in err
    assert err.count("\n") == 1


def test_a_run_folder_carried_without_its_fine_tuned_teacher_fine_tunes_it_again(tmp_path, run_args):
    # benchmarks/study_state.py carries the teacher's answers to another machine but not its weights:
    # the next stage that loads the teacher fine-tunes it again, and checks it answers as before on
    # held-out examples; a stage whose results are all on disk does not
    import shutil

    assert main(["-q", "teach", *run_args]) == 0
    teacher = tmp_path / "run" / "teacher"
    answers = {p.name: p.read_bytes() for p in teacher.glob("answers_*.jsonl")}
    metrics = (teacher / "metrics.json").read_bytes()
    shutil.rmtree(teacher / "finetune")
    assert main(["-q", "attribute", *run_args]) == 0  # no rationale yet: the teacher is needed
    assert (teacher / "finetune" / "model" / "config.json").is_file()
    remade = json.loads((teacher / "finetune" / "remade.json").read_text())
    assert remade == {"split": "test", "checked": 5, "agree": 5}  # same training, same answers
    assert {p.name: p.read_bytes() for p in teacher.glob("answers_*.jsonl")} == answers
    assert (teacher / "metrics.json").read_bytes() == metrics
    assert len(_store(tmp_path)[1]) == 17

    faithful = [*run_args, "analysis.faithfulness=true", "analysis.faithfulness_max_examples=4"]
    # attribute again (every rationale on disk); analyze (faithfulness scores the teacher); again (scored)
    for stage, needs_teacher in (("attribute", False), ("analyze", True), ("analyze", False)):
        shutil.rmtree(teacher / "finetune", ignore_errors=True)
        assert main(["-q", stage, *faithful]) == 0
        assert (teacher / "finetune" / "model").is_dir() == needs_teacher
    summary = json.loads((tmp_path / "run" / "analysis" / "train.json").read_text())
    assert summary["faithfulness"]["n"] == 4


@pytest.mark.parametrize("progress", [True, False])
def test_progress_false_silences_the_student_bars_too(tmp_path, run_args, capsys, progress):
    args = [a for a in run_args if not a.startswith(("progress=", "student.train.progress_bar=", "student.modes="))]
    assert main(["-q", "run", *args, "student.modes=[standard]", f"progress={str(progress).lower()}"]) == 0
    err = capsys.readouterr().err
    assert ("training:" in err and "ex/s" in err) is progress
