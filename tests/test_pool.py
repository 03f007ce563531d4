"""The pool: inputs without labels that the teacher labels for the students (task.labeled,
task.unlabeled, the pool-* modes, the confidence threshold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_distill.cli.main import main
from saliency_distill.data import Example, TaskConfig, get_task, prepare
from saliency_distill.data.pool import make_pool
from saliency_distill.errors import ConfigError
from saliency_distill.student.modes import build_pairs, confidence
from saliency_distill.student.pool import (
    THRESHOLDS,
    check_min_confidence,
    choose_min_confidence,
    min_confidence,
    training_examples,
)
from tests.conftest import write_planets


def _rows(n: int = 24, offset: int = 0) -> list[dict]:
    return [{"question": f"Which planet is bigger, number {i} or number {i + 1}?",
             "options": [f"planet {i}", f"planet {i + 1}"], "answer": f"planet {i + 1}"}
            for i in range(offset, offset + n)]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _task(path: Path, **kw) -> TaskConfig:
    from saliency_distill.data import FieldMap

    return TaskConfig(name="file", path=str(path), fields=FieldMap(choices="options", label="answer"), **kw)


def test_labeled_keeps_n_labels_and_the_pool_file_holds_no_label(tmp_path):
    data = _write(tmp_path / "d.jsonl", _rows(40))
    splits = prepare(_task(data, labeled=5), tmp_path / "run")
    assert len(splits["train"]) == 5 and all(ex.label for ex in splits["train"])
    pool = splits["pool"]
    assert pool and all(ex.label is None for ex in pool)
    ids = {ex.id for s in ("train", "validation", "test") for ex in splits[s]}
    assert not ids & {ex.id for ex in pool}
    written = [json.loads(line) for line in (tmp_path / "run" / "data" / "pool.jsonl").read_text().splitlines()]
    assert written and all(set(row) == {"id", "fields", "choices"} for row in written)
    manifest = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    assert manifest["sizes"]["pool"] == len(pool) and manifest["sizes"]["train"] == 5


def test_a_smaller_pool_is_the_start_of_a_larger_one(tmp_path):
    data = _write(tmp_path / "d.jsonl", _rows(60))
    task = get_task("file")
    from saliency_distill.data import make_splits

    splits = make_splits(task.load_source(_task(data)), _task(data))
    small = make_pool(splits, _task(data, labeled=4, max_pool=5))["pool"]
    large = make_pool(splits, _task(data, labeled=4, max_pool=20))["pool"]
    assert [ex.id for ex in large[:5]] == [ex.id for ex in small]


def test_unlabeled_file_reads_inputs_and_ignores_any_label(tmp_path):
    data = _write(tmp_path / "d.jsonl", _rows(24))
    rows = [{"question": r["question"], "options": r["options"], "answer": "planet 0", "id": f"u{i}"}
            for i, r in enumerate(_rows(6, offset=100))]
    extra = _write(tmp_path / "u.jsonl", rows)
    from saliency_distill.data import FieldMap

    cfg = TaskConfig(name="file", path=str(data), unlabeled=str(extra),
                     fields=FieldMap(choices="options", label="answer", id=None))
    splits = prepare(cfg, tmp_path / "run")
    assert len(splits["pool"]) == 6 and all(ex.label is None for ex in splits["pool"])
    assert {ex.choices for ex in splits["pool"]} == {tuple(r["options"]) for r in rows}


def test_pool_examples_learn_the_teachers_answer_and_the_threshold_drops_unsure_ones():
    task = get_task("file")
    from saliency_distill.data import FieldMap

    cfg = TaskConfig(name="file", path="-", fields=FieldMap(content=["question"], choices="options"))
    gold = Example("g", {"question": "q0"}, "b", ("a", "b"))
    sure = Example("p1", {"question": "q1"}, None, ("a", "b"))  # type: ignore[arg-type]
    unsure = Example("p2", {"question": "q2"}, None, ("a", "b"))  # type: ignore[arg-type]
    answers = {"p1": {"answer": "a", "logprobs": [0.0, -3.0]}, "p2": {"answer": "b", "logprobs": [-0.6, -0.5]}}
    assert confidence(answers["p1"], sure) == pytest.approx(1 / (1 + 2.718281828 ** -3))
    pairs = build_pairs("pool-label", task, cfg, [gold, sure, unsure], answers)
    assert pairs.targets == ["b", "a", "b"] and pairs.ids == ["g", "p1", "p2"]
    pairs = build_pairs("pool-label", task, cfg, [gold, sure, unsure], answers, min_confidence=0.6)
    assert pairs.ids == ["g", "p1"]


def test_the_pooled_variants_give_a_pool_input_the_teachers_answer_before_its_words_and_two_readings():
    task = get_task("file")
    from saliency_distill.data import FieldMap
    from saliency_distill.student.modes import MODES

    cfg = TaskConfig(name="file", path="-", fields=FieldMap(content=["question"], choices="options"))
    gold = Example("g", {"question": "q0 red"}, "b", ("a", "b"))
    pooled = Example("p1", {"question": "q1 blue"}, None, ("a", "b"))  # type: ignore[arg-type]
    answers = {"p1": {"answer": "a", "logprobs": [0.0, -3.0]}}
    words = {"g": "red", "p1": "blue"}
    pairs = build_pairs("pool-saliency-after", task, cfg, [gold, pooled], answers, words)
    assert pairs.ids == ["g", "g", "p1", "p1"] and pairs.targets == ["b", "red", "a", "blue"]
    assert pairs.prompts[3].startswith(pairs.prompts[2] + " a\nexplain")  # the teacher's answer, then the tag
    masked = {"g": "Question: q0", "p1": "Question: q1"}
    pairs = build_pairs("pool-saliency-consistency", task, cfg, [gold, pooled], answers, masked=masked)
    assert pairs.targets == ["b", "a", "b", "a", "b", "a", "a", "b", "a", "b"]  # label, options twice, per example
    assert pairs.views == [None, 0, 0, 1, 1, None, 0, 0, 1, 1] and "q1 blue" not in pairs.prompts[8]
    for name in ("pool-saliency-after", "pool-random-words-after", "pool-saliency-consistency",
                 "pool-random-consistency"):
        plain = MODES[name.removeprefix("pool-")]
        assert MODES[name].pool and MODES[name].needs_answers
        assert (MODES[name].explain, MODES[name].after, MODES[name].consistency) == (
            plain.explain, plain.after, plain.consistency)


def test_the_auto_threshold_reads_validation_only():
    exs = [Example(f"v{i}", {"question": "q"}, "a", ("a", "b")) for i in range(10)]
    # confident answers are right, unsure ones (p ~ 0.52) are wrong: auto keeps the confident ones
    rows = {f"v{i}": {"answer": "a" if i < 6 else "b", "correct": i < 6,
                      "logprobs": [0.0, -4.0] if i < 6 else [-0.1, 0.0]} for i in range(10)}
    chosen = choose_min_confidence(rows, exs)
    assert chosen in THRESHOLDS and 0.52 < chosen <= 0.9
    # the same rows all right: keep everything (the lowest threshold of equals)
    right = {k: {**v, "correct": True} for k, v in rows.items()}
    assert choose_min_confidence(right, exs) == 0.0
    assert min_confidence(0.3, None, exs) == 0.3 and min_confidence(None, None, exs) == 0.0


def test_the_random_control_keeps_as_many_pool_inputs_as_the_threshold_and_draws_per_seed():
    pool = [Example(f"p{i}", {"question": f"q{i}"}, None, ("a", "b")) for i in range(40)]  # type: ignore[arg-type]
    # 10 confident answers (p ~ 0.98), 30 unsure ones (p ~ 0.52)
    answers = {f"p{i}": {"answer": "a", "logprobs": [0.0, -4.0] if i % 4 == 0 else [0.0, -0.1]} for i in range(40)}
    splits = {"train": [Example("g", {"question": "q"}, "a", ("a", "b"))], "pool": pool}
    sure = [ex.id for ex in pool if confidence(answers[ex.id], ex) >= 0.9]
    assert len(sure) == 10
    drawn = {seed: training_examples("pool-label", splits, "random", answers, 0.9, seed) for seed in (0, 1, 2)}
    for seed, examples in drawn.items():
        assert examples[0].id == "g" and len(examples) == 1 + 10
        assert examples == training_examples("pool-label", splits, "random", answers, 0.9, seed)  # seeded
    ids = [tuple(ex.id for ex in examples[1:]) for examples in drawn.values()]
    assert len(set(ids)) == 3 and any(set(i) != set(sure) for i in ids)  # each seed its own draw, not the sure ones
    assert training_examples("pool-label", splits) == [*splits["train"], *pool]
    assert training_examples("standard", splits, "random", answers, 0.9, 0) == splits["train"]
    with pytest.raises(ConfigError, match="student.pool_keep"):
        check_min_confidence(None, "random")  # no threshold to draw as many as
    with pytest.raises(ConfigError, match="student.pool_keep"):
        check_min_confidence(0.5, "sure")


def _run_args(root: Path, data: Path, dirs, modes: str, *extra: str) -> list[str]:
    return [f"run_dir={root}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={dirs['qwen2']}", f"student.model.name={dirs['llama']}",
            "teacher.finetune=false", f"student.modes=[{modes}]", "student.train.max_steps=2",
            "student.train.progress_bar=false", "student.eval.max_new_tokens=4", "progress=false", "rationale.k=3",
            "task.labeled=6", *extra]


def test_pool_labels_never_reach_a_student(tmp_path, tiny_model_dirs):
    """Scrambling the labels of the rows that go to the pool leaves every student output the same."""
    data = write_planets(tmp_path)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    modes = ("standard,pool-label,pool-soft,pool-saliency,pool-random-words,pool-saliency-after,"
             "pool-random-words-after,pool-saliency-consistency,pool-random-consistency")
    assert main(["-q", "train", *_run_args(tmp_path / "a", data, tiny_model_dirs, modes)]) == 0
    pool_questions = {json.loads(line)["fields"]["question"]
                      for line in (tmp_path / "a" / "data" / "pool.jsonl").read_text().splitlines()}
    assert pool_questions
    scrambled = [{**r, "answer": r["options"][0]} if r["question"] in pool_questions else r for r in rows]
    assert scrambled != rows
    other = _write(tmp_path / "scrambled.jsonl", scrambled)
    assert main(["-q", "train", *_run_args(tmp_path / "b", other, tiny_model_dirs, modes)]) == 0
    students = sorted((tmp_path / "a" / "students").glob("*/seed0/predictions.jsonl"))
    assert len(students) == 9
    for path in students:
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert path.read_bytes() == twin.read_bytes(), path
        losses = [{k: json.loads((p.parent / "result.json").read_text())[k] for k in ("loss_first", "loss_last")}
                  for p in (path, twin)]
        assert losses[0] == losses[1], path  # the training targets too, not only the (tiny) model's answers
    html = (tmp_path / "a" / "report" / "report.html").read_text()
    assert f"{len(pool_questions)} inputs without labels; the teacher&#x27;s answers" in html \
        or f"{len(pool_questions)} inputs without labels; the teacher's answers" in html
    result = json.loads((tmp_path / "a" / "students" / "pool-label" / "seed0" / "result.json").read_text())
    assert result["train_examples"] == 6 and result["pool_examples"] == len(pool_questions)
    metrics = json.loads((tmp_path / "a" / "teacher" / "metrics.json").read_text())
    assert "pool" not in metrics["accuracy"] and metrics["quality"]["pool"]["n"] == len(pool_questions)


def test_the_teacher_answers_the_pool_only_for_a_mode_that_learns_from_it(tmp_path, tiny_model_dirs):
    """A run without pool modes leaves the pool unanswered; a later pool mode adds its answers, the
    labeled splits' rows kept as they were (not asked again)."""
    data = write_planets(tmp_path)
    teacher = tmp_path / "run" / "teacher"
    assert main(["-q", "train", *_run_args(tmp_path / "run", data, tiny_model_dirs, "teacher-label")]) == 0
    assert not (teacher / "answers_pool.jsonl").exists()
    train_rows = (teacher / "answers_train.jsonl").read_bytes()
    assert "pool" not in json.loads((teacher / "metrics.json").read_text())["quality"]
    assert main(["-q", "train", *_run_args(tmp_path / "run", data, tiny_model_dirs, "pool-label")]) == 0
    pool = (tmp_path / "run" / "data" / "pool.jsonl").read_text().splitlines()
    quality = json.loads((teacher / "metrics.json").read_text())["quality"]
    assert quality["pool"]["n"] == quality["pool"]["computed"] == len(pool) > 0
    assert all(quality[s]["computed"] == 0 for s in quality if s != "pool")
    assert (teacher / "answers_train.jsonl").read_bytes() == train_rows
    assert len((teacher / "answers_pool.jsonl").read_text().splitlines()) == len(pool)


def test_curve_tune_predict_export_and_the_card_with_a_pool(tmp_path, tiny_model_dirs, capsys):
    data = write_planets(tmp_path)
    run = tmp_path / "run"
    args = _run_args(run, data, tiny_model_dirs, "standard,pool-label,pool-soft,pool-saliency", "student.keep_models=true")
    assert main(["-q", "train", *args]) == 0
    assert main(["-q", "curve", *args, "--fractions", "0.5,1", "--resamples", "100"]) == 0
    curve = json.loads((run / "report" / "curve.json").read_text())
    assert {p["mode"] for p in curve["points"]} >= {"standard", "pool-label", "pool-saliency"}
    tune_args = [a for a in args if not a.startswith("student.keep_models")]
    assert main(["-q", "tune", *tune_args, "--methods", "attention", "--targets", "teacher", "--ks", "1,2",
                 "--alphas", "0.5,0.9", "--survivors", "1", "--validation-examples", "2", "--train-examples", "4"]) == 0
    tune = json.loads((run / "report" / "tune.json").read_text())
    assert tune["students"] and tune["chosen"]
    assert tune["alpha_by_mode"]["pool-saliency"] == tune["chosen"]["alpha"] and "pool-soft" not in tune["alpha_by_mode"]
    out = tmp_path / "preds.jsonl"
    assert main(["-q", "predict", "--run", str(run), "--mode", "pool-label", "--split", "test", "--output", str(out),
                 "--no-progress"]) == 0
    assert out.read_text().count("\n") == len((run / "data" / "test.jsonl").read_text().splitlines())
    assert main(["-q", "export", "--run", str(run), "--mode", "pool-label", "--output", str(tmp_path / "export")]) == 0
    card = (tmp_path / "export" / "README.md").read_text()
    pool = len((run / "data" / "pool.jsonl").read_text().splitlines())
    assert f"6 gold labels and {pool} pool inputs labelled by the teacher" in card
    assert "pool of inputs without labels" in card


def test_the_teacher_killed_in_the_pool_resumes_without_redoing_or_duplicating(tmp_path, tiny_model_dirs,
                                                                              monkeypatch, capsys):
    from saliency_distill.teacher import answer

    class Killed(BaseException):  # not an Exception: nothing on the way catches it, as with SIGKILL
        pass

    data = write_planets(tmp_path)
    args = lambda root: _run_args(root, data, tiny_model_dirs, "pool-label", "teacher.batch_size=1")  # noqa: E731
    assert main(["-q", "teach", *args(tmp_path / "whole")]) == 0
    real, calls = answer.answer_examples, []

    def answering(lm, prompter, chunk, cfg, die=False):
        if die and chunk[0].label is None and any(c[0] is None for c in calls):
            raise Killed  # in the second chunk of the pool
        calls.append([ex.label for ex in chunk[:1]] + [ex.id for ex in chunk])
        return real(lm, prompter, chunk, cfg)

    monkeypatch.setattr(answer, "answer_examples", lambda *a: answering(*a, die=True))
    with pytest.raises(Killed):
        main(["-q", "teach", *args(tmp_path / "cut")])
    folder = tmp_path / "cut" / "teacher"
    first = [i for c in calls for i in c[1:]]
    pool_first = [i for c in calls if c[0] is None for i in c[1:]]
    assert len(pool_first) == 8 and len((folder / "answers_pool.partial.jsonl").read_text().splitlines()) == 1 + 8
    assert not (folder / "metrics.json").exists() and not (folder / "answers_pool.jsonl").exists()
    calls.clear()
    monkeypatch.setattr(answer, "answer_examples", answering)
    assert main(["-q", "teach", *args(tmp_path / "cut")]) == 0
    again = [i for c in calls for i in c[1:]]
    want = {p.name: p.read_text() for p in (tmp_path / "whole" / "teacher").glob("answers_*.jsonl")}
    assert "answers_pool.jsonl" in want
    assert not set(again) & set(first) and len(again) + len(first) == sum(len(t.splitlines()) for t in want.values())
    assert {p.name: p.read_text() for p in folder.glob("answers_*.jsonl")} == want  # and no partial file left
    capsys.readouterr()
    assert main(["teach", *args(tmp_path / "cut")]) == 0  # reused: the summary names the pool's answers
    out = capsys.readouterr().out
    n = len((tmp_path / "cut" / "data" / "pool.jsonl").read_text().splitlines())
    assert f"pool       {n} inputs without labels; the teacher's answers: " in out


def test_a_fresh_run_announces_no_reuse_and_a_second_one_does(tmp_path, tiny_model_dirs, caplog):
    import logging

    from saliency_distill import run_dir

    data = write_planets(tmp_path)
    args = _run_args(tmp_path / "run", data, tiny_model_dirs, "standard,pool-saliency")
    caplog.set_level(logging.INFO, logger="saliency_distill")
    assert main(["-q", "train", *args]) == 0
    assert "reusing" not in caplog.text, caplog.text
    caplog.clear()
    run_dir._ANNOUNCED.clear()  # a new process
    assert main(["-q", "train", *args]) == 0
    for what in ("prepared data", "teacher answers", "rationale stores"):
        assert caplog.text.count(f"reusing {what}") == 1, caplog.text


def test_a_report_without_explaining_modes_names_no_attribution(tmp_path, tiny_model_dirs, capsys):
    data = write_planets(tmp_path)
    assert main(["-q", "run", *_run_args(tmp_path / "run", data, tiny_model_dirs, "standard,pool-label")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"run {tmp_path / 'run'}: task file, teacher ") and ", student " in first
    assert "attribution" not in first
    table = (tmp_path / "run" / "report" / "results.md").read_text()
    assert table.splitlines()[0].endswith(f"teacher {tiny_model_dirs['qwen2']}")
    assert "Settings:" not in table and "input_x_gradient" not in table.split("## Environment")[0]


def test_teacher_answers_show_progress_with_a_rate(tmp_path, tiny_model_dirs, capsys):
    data = write_planets(tmp_path)
    args = [a for a in _run_args(tmp_path / "run", data, tiny_model_dirs, "pool-label") if a != "progress=false"]
    assert main(["-q", "teach", *args, "progress=true"]) == 0
    err = capsys.readouterr().err
    for split in ("train", "validation", "test", "pool"):
        assert f"teacher {split}: 100%" in err, err
    assert "ex/s]" in err


def test_a_pool_row_of_a_choice_task_without_options_is_refused(tmp_path):
    from saliency_distill.data.pool import read_unlabeled
    from saliency_distill.errors import DataError

    extra = _write(tmp_path / "u.jsonl", [{"question": "Where would you put a plate?"}])
    train = [Example("t", {"question": "q"}, "a", ("a", "b", "c")), Example("u", {"question": "r"}, "d", ("d", "e"))]
    with pytest.raises(DataError, match=r"u.jsonl:1: no options for this choice task's input \(map them with "
                                        r"task.fields.choices\)"):
        read_unlabeled(TaskConfig(name="cqa", path="-", unlabeled=str(extra)), train)
    label_set = [Example("t", {"question": "q"}, "yes", ("yes", "no"))]
    [ex] = read_unlabeled(TaskConfig(name="file", path="-", unlabeled=str(extra)), label_set)
    assert ex.choices == ("yes", "no") and ex.label is None and ex.id == "pool-0"
