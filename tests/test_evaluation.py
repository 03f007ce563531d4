from __future__ import annotations

import json

import pytest
import torch

import saliency_distill.evaluation
import saliency_distill.teacher.generate as teacher_generate
import saliency_distill.teacher.scoring as teacher_scoring
from saliency_distill.config import build
from saliency_distill.data import Example, TaskConfig, get_task
from saliency_distill.data.example import make_example
from saliency_distill.errors import ConfigError, DataError
from saliency_distill.evaluation import (
    EvalConfig,
    evaluate_student,
    exact_match,
    normalise_answer,
    student_prompt,
    write_predictions,
)
from saliency_distill.evaluation.evaluate import identity as eval_identity
from saliency_distill.models import load_model, native_dtype
from saliency_distill.teacher import is_correct

QUARTZ_CFG = TaskConfig()
SVAMP_CFG = TaskConfig(name="svamp", path="-")


def _choice_examples() -> list[Example]:
    questions = [
        "More resistors: the resistance",
        "Where would you put a plate after washing it?",
        "The quick brown fox is faster than the lazy dog, so the dog is",
    ]
    choices = [("increases", "decreases"), ("cupboard", "table"), ("faster", "slower")]
    labels = ["increases", "cupboard", "slower"]
    return [Example(id=f"q{i}", fields={"question": q}, label=lab, choices=cs)
            for i, (q, cs, lab) in enumerate(zip(questions, choices, labels))]


def _svamp_examples() -> list[Example]:
    return [Example(id=f"s{i}", fields={"question": f"Luke scored {84 * i} points in {i} rounds. Per round?"},
                    label=f"( {84.0 * i} / {float(i)} )", meta={"answer": 84.0}) for i in (1, 2, 3)]


SVAMP = Example(id="s", fields={"question": "84 in 2 rounds"}, label="( 84.0 / 2.0 )", meta={"answer": 42.0})


@pytest.fixture(scope="module")
def students(tiny_model_dirs):
    return {name: load_model(str(tiny_model_dirs[name])) for name in ("llama", "t5")}


@pytest.mark.parametrize(("text", "expected"), [
    ("  Table ", "table"),
    ("(b) Table.", "table"),
    ("b) table", "table"),
    ("A: Entailment", "entailment"),
    ('"Cupboard!"', "cupboard"),
    ("“the   Lazy\n dog”", "the lazy dog"),
    ("**increases**", "increases"),
    ("a cat", "a cat"),  # an article is not a choice marker
    ("(b)", "b"),  # a bare marker keeps its letter
    ("-5", "-5"),  # a sign is not decoration
    ("", ""),
])
def test_normalise_answer(text, expected):
    assert normalise_answer(text) == expected


def test_exact_match_choice_labels():
    ex = Example(id="1", fields={"q": "x"}, label="Table", choices=("cupboard", "Table"))
    assert exact_match("(b) Table.", ex) and exact_match("table", ex) and exact_match("A: table", ex)
    assert not exact_match("cupboard", ex) and not exact_match("table top", ex) and not exact_match("", ex)
    free = Example(id="2", fields={"q": "x"}, label="-5")  # free-form, not arithmetic: compared as text
    assert exact_match("-5.", free) and not exact_match("5", free)


def test_exact_match_equations_by_value():
    assert exact_match("(84 / 2)", SVAMP) and exact_match("21 * 2", SVAMP) and exact_match("42", SVAMP)
    assert exact_match("42.00001", SVAMP) and not exact_match("42.001", SVAMP)
    assert not exact_match("84 - 2", SVAMP)
    for bad in ("__import__('os')", "import os", "", "84 / 0", "(" * 5000 + "1" + ")" * 5000, "2 ** 5"):
        assert exact_match(bad, SVAMP) is False
    broken = Example(id="b", fields={"q": "x"}, label="1", meta={"answer": "many"})
    with pytest.raises(DataError, match="example b"):
        exact_match("1", broken)


def test_teacher_is_correct_is_the_same_rule():
    ex = Example(id="1", fields={"q": "x"}, label="Table", choices=("cupboard", "Table"))
    for answer in ("(b) Table.", "table", "cupboard"):
        assert is_correct(ex, answer) == exact_match(answer, ex)
    assert is_correct(SVAMP, "(84 / 2)") and not is_correct(SVAMP, "__import__('os')")


def test_eval_config_validation():
    cfg = EvalConfig()
    assert (cfg.batch_size, cfg.max_new_tokens, cfg.choice_scoring, cfg.max_examples) == (16, 32, True, None)
    for key, value in (("batch_size", 0), ("max_new_tokens", -1), ("max_examples", 0), ("batch_size", True)):
        with pytest.raises(ConfigError, match=f"'{key}'"):
            EvalConfig(**{key: value})
    with pytest.raises(ConfigError, match="max_examples"):
        build(EvalConfig, {"max_examples": "all"})
    assert build(EvalConfig, {"max_examples": 2}).max_examples == 2


def test_student_prompt_template_needs_the_input():
    task = get_task("quartz")
    ex = make_example("test", "q0", {"question": "More resistors: the resistance"}, "increases",
                      choices=["increases", "decreases"])
    assert student_prompt(task, QUARTZ_CFG, ex).endswith("Answer:\npredict:")
    assert student_prompt(task, QUARTZ_CFG, ex, "predict: {input}").startswith("predict: Question:")
    with pytest.raises(ConfigError, match="has no {input}"):
        student_prompt(task, QUARTZ_CFG, ex, "predict: ")


def test_public_names():
    names = saliency_distill.evaluation.__all__
    assert len(names) == len(set(names)) and all(hasattr(saliency_distill.evaluation, n) for n in names)


@pytest.mark.parametrize("name", ["llama", "t5"])
def test_evaluate_student_choice_task(students, name, monkeypatch):
    lm, task, examples = students[name], get_task("quartz"), _choice_examples()
    seen: dict[str, list] = {"generate": [], "score": []}
    generate, score = teacher_generate.generate_answers, teacher_scoring.score_choices

    def spy_generate(lm, prompts, *args, **kwargs):
        seen["generate"].append(list(prompts))
        return generate(lm, prompts, *args, **kwargs)

    def spy_score(lm, prompts, *args, **kwargs):
        seen["score"].append(list(prompts))
        return score(lm, prompts, *args, **kwargs)

    monkeypatch.setattr(teacher_generate, "generate_answers", spy_generate)
    monkeypatch.setattr(teacher_scoring, "score_choices", spy_score)
    rows, metrics = evaluate_student(lm, task, QUARTZ_CFG, examples, EvalConfig(batch_size=4, max_new_tokens=5))

    prompts = [task.render(ex, QUARTZ_CFG).text + "\npredict:" for ex in examples]
    assert seen == {"generate": [prompts], "score": [prompts]}
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"] and metrics["n"] == 3
    assert [r["prediction"] for r in rows] == generate(lm, prompts, 5, 4)
    for row, ex in zip(rows, examples):
        assert row["gold"] == ex.label and row["correct"] == exact_match(row["prediction"], ex)
        assert row["ranked_choice"] in ex.choices
        assert row["ranked_correct"] == (row["ranked_choice"] == ex.label)
    assert metrics["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 3)
    assert metrics["ranked_accuracy"] == pytest.approx(sum(r["ranked_correct"] for r in rows) / 3)
    # the ranked choice is the argmax of the summed log-likelihood under the prefixed prompt
    sums = score(lm, prompts, [ex.choices for ex in examples]).sums
    assert [r["ranked_choice"] for r in rows] == [ex.choices[s.index(max(s))] for ex, s in zip(examples, sums)]

    monkeypatch.undo()
    single, _ = evaluate_student(lm, task, QUARTZ_CFG, examples, EvalConfig(batch_size=1, max_new_tokens=5))
    assert single == rows  # greedy: batching changes nothing


def test_evaluate_student_free_form(students, monkeypatch):
    lm, task, examples = students["llama"], get_task("svamp"), _svamp_examples()
    rows, metrics = evaluate_student(lm, task, SVAMP_CFG, examples, EvalConfig(max_new_tokens=4, max_examples=2))
    assert [r["id"] for r in rows] == ["s1", "s2"]
    assert all("ranked_choice" not in r for r in rows)
    assert metrics["n"] == 2 and metrics["ranked_accuracy"] is None

    # correctness is by equation value: stub the model's answers to known ones
    seen: list[list[str]] = []

    def fake_generate(lm, prompts, *args, **kwargs):
        seen.append(list(prompts))
        return ["( 84 / 1 )", "84 - 2", "__import__('os')"]

    monkeypatch.setattr(teacher_generate, "generate_answers", fake_generate)
    rows, metrics = evaluate_student(lm, task, SVAMP_CFG, examples, EvalConfig(), "solve: {input}")
    assert [r["correct"] for r in rows] == [True, False, False]
    native = native_dtype("bfloat16", "cpu")  # eval.bf16 auto: autocast where the CPU computes bf16
    assert metrics == {"n": 3, "accuracy": pytest.approx(1 / 3), "ranked_accuracy": None, "bf16": native}
    assert seen == [[student_prompt(task, SVAMP_CFG, ex, "solve: {input}") for ex in examples]]
    assert seen[0][0] == "solve: Question: Luke scored 84 points in 1 rounds. Per round?\nEquation:"


def test_answers_run_under_bf16_autocast_as_asked_and_the_switch_is_no_identity(students, monkeypatch):
    lm, task, examples = students["llama"], get_task("svamp"), _svamp_examples()
    real = teacher_generate.generate_answers
    autocast = []

    def spying(*args, **kwargs):
        autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return real(*args, **kwargs)

    monkeypatch.setattr(teacher_generate, "generate_answers", spying)
    answers = {}
    for bf16 in (True, False):
        rows, metrics = evaluate_student(lm, task, SVAMP_CFG, examples, EvalConfig(max_new_tokens=4, bf16=bf16))
        answers[bf16] = [r["prediction"] for r in rows]
        assert metrics["bf16"] is bf16
    assert autocast == [True, False] and not torch.is_autocast_enabled("cpu")
    assert len(answers[True]) == len(answers[False]) == len(examples)
    assert eval_identity(EvalConfig(bf16=True)) == eval_identity(EvalConfig(bf16=False))
    assert "bf16" not in eval_identity(EvalConfig()) and eval_identity(EvalConfig(batch_size=4))["batch_size"] == 4
    with pytest.raises(ConfigError, match="'bf16'"):
        EvalConfig(bf16="yes")


def test_evaluation_shows_progress_with_a_rate(students, capsys):
    lm, task = students["llama"], get_task("quartz")
    quiet = evaluate_student(lm, task, QUARTZ_CFG, _choice_examples(), EvalConfig(batch_size=2, max_new_tokens=2))
    assert "student answers" not in capsys.readouterr().err
    shown = evaluate_student(lm, task, QUARTZ_CFG, _choice_examples(), EvalConfig(batch_size=2, max_new_tokens=2),
                             progress=True)
    err = capsys.readouterr().err
    assert shown == quiet
    for bar in ("student answers: 100%", "student ranks options: 100%"):
        assert bar in err and "3/3" in err, err
    assert "ex/s]" in err


def test_evaluate_student_empty_and_choice_scoring_off(students):
    lm, task = students["llama"], get_task("quartz")
    assert evaluate_student(lm, task, QUARTZ_CFG, [], EvalConfig(bf16=False)) == (
        [], {"n": 0, "accuracy": None, "ranked_accuracy": None, "bf16": False})
    rows, metrics = evaluate_student(lm, task, QUARTZ_CFG, _choice_examples()[:1],
                                     EvalConfig(choice_scoring=False, max_new_tokens=2))
    assert "ranked_choice" not in rows[0] and metrics["ranked_accuracy"] is None


def test_write_predictions(tmp_path):
    rows = [{"id": "q0", "prediction": "table", "gold": "table", "correct": True}]
    metrics = {"n": 1, "accuracy": 1.0, "ranked_accuracy": None}
    pred_path, metrics_path = write_predictions(tmp_path / "eval", rows, metrics)
    assert pred_path == tmp_path / "eval" / "predictions.jsonl" and metrics_path.name == "metrics.json"
    assert [json.loads(line) for line in pred_path.read_text().splitlines()] == rows
    assert json.loads(metrics_path.read_text()) == metrics
    with pytest.raises(ConfigError, match="exist"):
        write_predictions(tmp_path / "eval", rows, metrics)
    write_predictions(tmp_path / "eval", [], {"n": 0}, overwrite=True)
    assert pred_path.read_text() == "" and json.loads(metrics_path.read_text()) == {"n": 0}
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["metrics.json", "predictions.jsonl"]


def test_a_prompt_longer_than_the_students_context_is_one_line(students):
    task = get_task("quartz")
    long = make_example("test", "long-3", {"question": "the quick brown fox " * 70}, "faster",
                        choices=["faster", "slower"])
    with pytest.raises(DataError, match=r"example long-3: \d+ tokens with its answer is longer than the model's "
                                        r"context \(256\)") as info:
        evaluate_student(students["llama"], task, QUARTZ_CFG, [long], EvalConfig())
    assert "\n" not in str(info.value)
