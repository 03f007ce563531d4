"""Teacher outputs a student can learn from: generated answers cut at the stop strings and made
canonical, the per-class view of the teacher, label-prior calibration and balanced demonstrations."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.testing import assert_close

from saliency_distill.data import Example, TaskConfig, get_task
from saliency_distill.data.answers import canonical_equation, equation_value
from saliency_distill.models import load_model
from saliency_distill.models.tokens import answer_ids
from saliency_distill.student.modes import build_pairs
from saliency_distill.teacher import TeacherConfig, answer_examples
from saliency_distill.teacher import answer as answer_module
from saliency_distill.teacher.answer import teach
from saliency_distill.teacher.calibration import (
    apply_bias,
    calibrate_rows,
    contextual_bias,
    cross_fitted_prior_accuracy,
    fit_prior,
    log_normalise,
)
from saliency_distill.teacher.prompt import TeacherPrompter
from saliency_distill.teacher.quality import answer_quality, class_warnings, collapse_warning

SVAMP = get_task("svamp")
SVAMP_CFG = TaskConfig(name="svamp", path="-")
NLI = ("entailment", "neutral", "contradiction")


# ---- generated answers: cut at the stop, canonical -----------------------------------------

@pytest.mark.parametrize("raw, canonical", [
    ("( 17.0 + 15.0 + 2.0 )Human: To solve the problem", "( ( 17.0 + 15.0 ) + 2.0 )"),
    ("( 28.0 - 22.0 ) + ( 63.0 - 8.0 ) ) ) ) ) ) )", "( ( 28.0 - 22.0 ) + ( 63.0 - 8.0 ) )"),
    ("( 84.0 / 2.0 )", "( 84.0 / 2.0 )"),
    ("84 / 2 = 42", "( 84.0 / 2.0 )"),
    ("-3 + 10 / 4", "( ( - 3.0 ) + ( 10.0 / 4.0 ) )"),
    ("( 13.0 / 28.0 , 15.0 / 28.0 )Human:", None),  # no whole expression: no answer, not text
    ("To solve the problem, we need", None),
])
def test_canonical_equation_prints_the_equation_back(raw, canonical):
    assert canonical_equation(raw) == canonical
    if canonical is not None:  # the same value as the raw answer: a student learns what was scored
        assert equation_value(canonical) == pytest.approx(equation_value(raw))
        assert canonical_equation(canonical) == canonical  # a fixed point


def _memorise(lm, pairs: list[tuple[str, str]], steps: int = 300) -> None:
    """Train the tiny model until it continues each prompt with its text (loss on the continuation)."""
    tok, model = lm.tokenizer, lm.model
    batch = []
    for prompt, text in pairs:
        p, t = tok(prompt)["input_ids"], answer_ids(lm, text)
        batch.append((torch.tensor(p + t), torch.tensor([-100] * len(p) + t)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    torch.manual_seed(0)
    for _ in range(steps):
        loss = sum(model(input_ids=ids[None], labels=labels[None]).loss for ids, labels in batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def test_a_continuation_that_runs_on_is_cut_at_the_stop_and_students_learn_the_canonical_form(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["qwen2"]))
    exs = [Example(id="s0", fields={"question": "Luke scored 17 and 15 and 2 points."}, label="( 34.0 )",
                   meta={"answer": 34.0}),
           Example(id="s1", fields={"question": "The fox ate 8 of 35 grapes?"}, label="( 35.0 - 8.0 )",
                   meta={"answer": 27.0})]
    prompter = TeacherPrompter(SVAMP, SVAMP_CFG)
    runs_on = {"s0": "( 17.0 + 15.0 + 2.0 )Human: To solve the problem, we need",
               "s1": "( 35.0 - 8.0 ) ) )\nQuestion: the lazy dog"}
    _memorise(lm, [(prompter.render(ex).text, runs_on[ex.id]) for ex in exs])
    free = answer_examples(lm, prompter, exs, TeacherConfig(max_new_tokens=40, stop=["</s>"]))
    assert "Human: To solve" in free[0]["raw"] and "\nQuestion:" in free[1]["raw"]  # memorised: it does run on

    rows = answer_examples(lm, prompter, exs, TeacherConfig(max_new_tokens=40))
    s0, s1 = rows
    assert s0["raw"].strip() == "( 17.0 + 15.0 + 2.0 )Human:"  # generation stopped at the stop string
    assert s1["raw"].strip() == "( 35.0 - 8.0 ) ) )"  # ... and at the newline
    assert s0["answer"] == s0["target"] == "( ( 17.0 + 15.0 ) + 2.0 )" and s0["correct"]
    assert s1["answer"] == "( 35.0 - 8.0 )" and s1["correct"]
    pairs = build_pairs("teacher-label", SVAMP, SVAMP_CFG, exs, {r["id"]: r for r in rows})
    assert pairs.targets == ["( ( 17.0 + 15.0 ) + 2.0 )", "( 35.0 - 8.0 )"]


def test_an_answer_without_an_equation_is_left_out_of_teacher_label_students():
    exs = [Example(id=f"s{i}", fields={"question": f"q {i}"}, label="( 1.0 + 1.0 )", meta={"answer": 2.0})
           for i in range(3)]
    answers = {"s0": {"answer": "( 1.0 + 1.0 )"}, "s1": {"answer": None}, "s2": {"answer": "( 2.0 * 1.0 )"}}
    pairs = build_pairs("teacher-label", SVAMP, SVAMP_CFG, exs, answers)
    assert pairs.ids == ["s0", "s2"] and pairs.targets == ["( 1.0 + 1.0 )", "( 2.0 * 1.0 )"]
    q = answer_quality([{"id": e.id, "answer": answers[e.id]["answer"], "correct": e.id != "s1"} for e in exs], exs)
    assert q["no_answer"] == 1 and q["answer_distribution"]["(no answer)"] == 1


# ---- the per-class view ----------------------------------------------------------------------

def nli(i: int, label: str) -> Example:
    return Example(id=f"n{i}", fields={"premise": f"Two women embrace {i}.", "hypothesis": "They hug."},
                   label=label, choices=NLI)


def test_a_class_the_teacher_never_says_is_warned_about_by_name():
    gold = ["entailment"] * 40 + ["neutral"] * 30 + ["contradiction"] * 30
    exs = [nli(i, g) for i, g in enumerate(gold)]
    # a scripted teacher: right on entailment and contradiction, never says neutral
    said = [g if g != "neutral" else ("entailment" if i % 2 else "contradiction") for i, g in enumerate(gold)]
    rows = [{"id": ex.id, "answer": s, "correct": s == ex.label} for ex, s in zip(exs, said)]
    q = answer_quality(rows, exs)
    assert q["recall"] == {"contradiction": 1.0, "entailment": 1.0, "neutral": 0.0}
    assert q["confusion"]["neutral"] == {"contradiction": 15, "entailment": 15}
    assert collapse_warning("train", q) is None  # no answer takes 80%: the old warning is silent
    [warning] = class_warnings("train", q)
    assert "'neutral' for 0.0%" in warning and "gold share is 30.0%" in warning
    # a class said at a third of its gold share or more is not warned about
    rows[40]["answer"] = rows[41]["answer"] = rows[42]["answer"] = rows[43]["answer"] = "neutral"
    rows[44]["answer"] = rows[45]["answer"] = rows[46]["answer"] = rows[47]["answer"] = "neutral"
    assert len(class_warnings("train", answer_quality(rows, exs))) == 1  # 8 < 10 = a third of 30
    rows[48]["answer"] = rows[49]["answer"] = "neutral"
    assert class_warnings("train", answer_quality(rows, exs)) == []


# ---- calibration -----------------------------------------------------------------------------

def test_contextual_calibration_gives_the_hand_computed_distribution():
    # the content-free prompts give (0.6, 0.2, 0.2) on average: "N/A" -> (0.7, 0.2, 0.1), "" -> (0.5, 0.2, 0.3)
    content_free = [[math.log(0.7), math.log(0.2), math.log(0.1)], [math.log(0.5), math.log(0.2), math.log(0.3)]]
    bias = contextual_bias(content_free)
    assert_close(torch.tensor(bias, dtype=torch.float64), -torch.log(torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)),
                 rtol=0, atol=1e-12)
    # an example at (0.5, 0.3, 0.2): divided by (0.6, 0.2, 0.2) -> (0.833, 1.5, 1.0), normalised
    calibrated = apply_bias([math.log(0.5) + 7, math.log(0.3) + 7, math.log(0.2) + 7], bias)  # any offset
    expected = torch.tensor([0.5 / 0.6, 0.3 / 0.2, 0.2 / 0.2], dtype=torch.float64)
    assert_close(torch.tensor(calibrated, dtype=torch.float64).exp(), expected / expected.sum(), rtol=0, atol=1e-12)
    assert max(range(3), key=calibrated.__getitem__) == 1  # the answer moves from option 0 to option 1
    # a model without a preference is left as it was
    assert_close(torch.tensor(apply_bias([-1.0, -2.0, -3.0], contextual_bias([[0.0, 0.0, 0.0]]))),
                 torch.tensor(log_normalise([-1.0, -2.0, -3.0])), rtol=0, atol=1e-12)


def test_prior_calibration_matches_the_gold_answer_distribution():
    torch.manual_seed(0)
    gold = [i % 3 for i in range(60)]
    # a teacher with a strong pull towards option 0, and some signal for the gold option
    scores = [[2.0 + float(torch.randn(())), 0.0, 0.0] for _ in gold]
    for s, g in zip(scores, gold):
        s[g] += 1.0
    biases = fit_prior(scores, gold)
    calibrated = calibrate_rows(scores, biases)
    answers = [max(range(3), key=c.__getitem__) for c in calibrated]
    assert all(abs(answers.count(i) - 20) <= 1 for i in range(3))  # distributed as the gold answers (20 each)
    assert [max(range(3), key=s.__getitem__) for s in scores].count(0) > 40  # before: mostly option 0
    before = sum(max(range(3), key=s.__getitem__) == g for s, g in zip(scores, gold)) / len(gold)
    after = sum(max(range(3), key=c.__getitem__) == g for c, g in zip(calibrated, gold)) / len(gold)
    assert before <= 0.5 and after > before + 0.2  # option 0 wins whenever the signal is not for another
    assert after >= cross_fitted_prior_accuracy(scores, gold) > before  # held-out: still better, less so


def test_teach_with_contextual_calibration_records_it_and_undoes_a_constant_letter_bias(tiny_model_dirs, tmp_path,
                                                                                        monkeypatch):
    from test_teacher_prompt import CQA_CFG, choice_example, prefer_token

    def biased(cfg):  # the teacher prefers "(b)" whatever the question
        lm = load_model(str(tiny_model_dirs["qwen2"]))
        prefer_token(lm, [t for t, u in zip(answer_ids(lm, "(b)"), answer_ids(lm, "(a)")) if t != u][0], bias=8.0)
        return lm

    monkeypatch.setattr(answer_module, "load_model", biased)
    exs = [choice_example(i, answer=i % 3) for i in range(12)]
    splits = {"train": exs, "validation": exs, "test": exs}
    plain = teach(CQA_CFG, TeacherConfig(format="letter", finetune=False, splits=["test"]), splits, tmp_path / "a")
    assert plain["quality"]["test"]["answer_distribution"] == {"table": 12}  # (b) every time
    cfg = TeacherConfig(format="letter", finetune=False, splits=["validation", "test"], calibration="contextual")
    metrics = teach(CQA_CFG, cfg, splits, tmp_path / "b")
    bias = metrics["calibration"]["bias"]["3"]
    assert metrics["calibration"]["method"] == "contextual" and bias[1] < min(bias[0], bias[2]) - 4
    rows = [json.loads(line) for line in (tmp_path / "b" / "teacher" / "answers_test.jsonl").read_text().splitlines()]
    for row, ex in zip(rows, exs):
        assert row["answer_uncalibrated"] == "table"
        assert_close(torch.tensor(row["logprobs"]), torch.tensor(apply_bias(row["logprobs_raw"], bias)),
                     rtol=0, atol=2e-4)  # the calibrated distribution: what soft-label students learn
        assert row["answer"] == ex.choices[max(range(3), key=row["logprobs"].__getitem__)]
        assert row["target"] == f"({'abc'[ex.choices.index(row['answer'])]})"
    q = metrics["quality"]["test"]
    assert q["uncalibrated"]["answer_distribution"] == {"table": 12}
    assert q["answer_distribution"].get("table", 0) < 12  # the constant pull is gone
    assert metrics["accuracy"]["test"]["accuracy_uncalibrated"] == pytest.approx(1 / 3)


# ---- demonstrations --------------------------------------------------------------------------

@pytest.mark.parametrize("shots", [3, 6])
def test_demonstrations_are_balanced_and_never_the_scored_example(shots):
    # a skewed train split: 13 entailment, 4 neutral, 3 contradiction
    pool = [nli(i, "entailment" if i < 13 else "neutral" if i < 17 else "contradiction") for i in range(20)]
    for seed in range(5):
        prompter = TeacherPrompter(get_task("esnli"), TaskConfig(name="esnli", path="-"), "letter", shots=shots,
                                   demo_pool=pool, seed=seed)
        assert prompter.describe()["draw"] == "balanced"
        orders = set()
        for ex in pool:
            demos = prompter.demonstrations(ex.id)
            assert ex.id not in {d.id for d in demos} and len(demos) == shots
            assert sorted(d.label for d in demos) == sorted(NLI * (shots // 3))
            orders.add(tuple(d.label for d in demos))
        assert len(orders) == 1  # a replaced demonstration keeps its slot's label
