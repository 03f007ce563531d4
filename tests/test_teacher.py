from __future__ import annotations

import pytest

from saliency_distill.data import Example, TaskConfig, get_task
from saliency_distill.data.answers import canonical_equation
from saliency_distill.errors import ConfigError
from saliency_distill.models import load_model
from saliency_distill.teacher import TeacherConfig, answer_examples, generate_answers, is_correct
from saliency_distill.teacher.generate import cut_at_stop, length_order
from saliency_distill.teacher.prompt import TeacherPrompter


def test_is_correct_choice_and_equation():
    choice = Example(id="1", fields={"q": "x"}, label="Table", choices=("cupboard", "Table"))
    assert is_correct(choice, "table") and not is_correct(choice, "cupboard")
    svamp = Example(id="2", fields={"question": "84 in 2 rounds"}, label="( 84.0 / 2.0 )", meta={"answer": 42.0})
    assert is_correct(svamp, "(84 / 2)") and is_correct(svamp, "21 * 2")
    assert not is_correct(svamp, "84 - 2") and not is_correct(svamp, "import os")
    # a worked equation counts as its left-hand side; the stated result alone is never trusted
    assert is_correct(svamp, "84 / 2 = 42") and not is_correct(svamp, "84 - 2 = 42")
    assert not is_correct(svamp, "x = 42") and not is_correct(svamp, "84 - 2 = 42 = 42")
    # an equation that runs on into words or stray brackets counts as its leading expression
    assert is_correct(svamp, "( 84.0 / 2.0 )Human: A man has 3 apples")
    assert is_correct(svamp, "( 84.0 / 2.0 ) ) ) )") and is_correct(svamp, "(84 / 2) apples each")
    assert not is_correct(svamp, "( 84.0 - 2.0 ) so 42") and not is_correct(svamp, "The answer is 42")


def test_generation_is_greedy_and_batch_independent(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    prompts = ["a b", "Luke scored 84 points.\nEquation:", "the quick brown fox", "Q: 2 rounds?\nEquation:"]
    single = [generate_answers(lm, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert len(set(single)) > 1  # distinct answers, so a row put back in the wrong place shows
    for batch_size in (2, 3, 4):  # batched by length, answers back in the prompts' order
        assert generate_answers(lm, prompts, max_new_tokens=6, batch_size=batch_size) == single
    assert lm.tokenizer.padding_side == "right"  # restored


def test_length_order_longest_first_stable():
    assert length_order([3, 9, 3, 5, 9]) == [1, 4, 3, 0, 2]
    assert length_order([]) == []


def test_answer_examples_free_form_and_choice(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["qwen2"]))
    svamp = get_task("svamp")
    exs = [Example(id=f"s{i}", fields={"question": f"Luke scored {i} points"}, label=f"( {i}.0 + 1.0 )",
                   meta={"answer": i + 1.0}) for i in range(3)]
    prompter = TeacherPrompter(svamp, TaskConfig(name="svamp", path="-"))
    cfg = TeacherConfig(max_new_tokens=4)
    rows = answer_examples(lm, prompter, exs, cfg)
    assert [r["id"] for r in rows] == ["s0", "s1", "s2"] and all(isinstance(r["raw"], str) for r in rows)
    for row in rows:  # a random model writes no equation: its answer is None, never the raw text
        assert row["answer"] == row["target"] == canonical_equation(cut_at_stop(row["raw"], cfg.stop))
        assert row["correct"] is False or row["answer"] is not None
    quartz = get_task("quartz")
    exs = [Example(id="q", fields={"question": "More resistors: the resistance"}, label="increases",
                   choices=("increases", "decreases"))]
    [row] = answer_examples(lm, TeacherPrompter(quartz, TaskConfig()), exs, TeacherConfig(scoring="mean"))
    assert row["answer"] == row["answer_mean"] and row["correct"] == (row["answer"] == "increases")
    assert len(row["logprobs"]) == 2 and all(v < 0 for v in row["logprobs"])


def test_bad_split():
    with pytest.raises(ConfigError, match="teacher.splits"):
        TeacherConfig(splits=["train", "dev"])
