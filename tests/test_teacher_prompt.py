"""How the teacher is asked (answer format, demonstrations, chat) and the teacher quality report."""

from __future__ import annotations

import json

import pytest
import torch
from test_attribution import ToyLM

from saliency_distill.attribution import AttributionConfig
from saliency_distill.config import build
from saliency_distill.data import Example, TaskConfig, get_task
from saliency_distill.errors import ConfigError, DataError
from saliency_distill.experiment import ExperimentConfig
from saliency_distill.models import LoadedModel, load_model
from saliency_distill.models.tokens import answer_ids
from saliency_distill.rationale import RationaleConfig, RationaleStore, attribute_split
from saliency_distill.teacher import TeacherConfig, answer_examples, sequence_logprobs
from saliency_distill.teacher import answer as answer_module
from saliency_distill.teacher.answer import check_prompt_lengths, teach
from saliency_distill.teacher.prompt import TeacherPrompter
from saliency_distill.teacher.quality import answer_quality, collapse_warning, wilson_interval

CQA, ESNLI = get_task("cqa"), get_task("esnli")
CQA_CFG, ESNLI_CFG = TaskConfig(name="cqa", path="-"), TaskConfig(name="esnli", path="-")


def choice_example(i: int, answer: int = 0) -> Example:
    choices = ("cupboard", "table", "dog")
    return Example(id=f"q{i}", fields={"question": f"Where would you put plate {i}?"}, label=choices[answer],
                   choices=choices)


def nli_example(i: int) -> Example:
    return Example(id=f"n{i}", fields={"premise": f"Two women are embracing {i}.", "hypothesis": "Two women hug."},
                   label="entailment", choices=("entailment", "neutral", "contradiction"))


@pytest.fixture
def qwen(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["qwen2"]))


def prefer_token(lm: LoadedModel, token: int, bias: float = 30.0) -> None:
    """Give ``token`` a large logit everywhere (an LM head with a bias): a known preferred answer."""
    old = lm.model.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[token] = bias
    lm.model.set_output_embeddings(head)


# ---- answer formats ---------------------------------------------------------------------------

def test_letter_scoring_picks_the_preferred_option(qwen):
    prompter = TeacherPrompter(CQA, CQA_CFG, "letter")
    a, b = answer_ids(qwen, "(a)"), answer_ids(qwen, "(b)")
    [b_token] = [t for t, u in zip(b, a) if t != u]  # the letter's own token
    prefer_token(qwen, b_token)
    rows = answer_examples(qwen, prompter, [choice_example(i) for i in range(3)], TeacherConfig(format="letter"))
    for row in rows:
        assert row["target"] == "(b)" and row["answer"] == "table" and row["correct"] is False
        others = [v for i, v in enumerate(row["logprobs"]) if i != 1]
        assert row["logprobs"][1] > max(others) + 10  # the biased letter wins by a wide margin
    # the letter's score is log p(" (b)" | prompt), as sequence_logprobs computes it
    prompt = prompter.render(choice_example(0)).text
    [direct], _ = sequence_logprobs(qwen, [prompt], ["(b)"])
    assert rows[0]["logprobs"][1] == pytest.approx(direct, abs=1e-3)


def test_text_format_scores_option_texts(qwen):
    prompter = TeacherPrompter(CQA, CQA_CFG, "text")
    ex = choice_example(0)
    assert prompter.candidates(ex) == list(ex.choices) and prompter.target(ex, "dog") == "dog"
    assert TeacherPrompter(CQA, CQA_CFG, "letter").target(ex, "dog") == "(c)"


def test_auto_format_is_letter_for_choice_tasks_and_text_for_free_form():
    assert TeacherPrompter(CQA, CQA_CFG).format == "letter"
    assert TeacherPrompter(get_task("svamp"), TaskConfig(name="svamp", path="-")).format == "text"
    build(ExperimentConfig, {"task": {"name": "svamp", "path": "-"}})  # the default format is valid everywhere


def test_label_set_in_letter_format_is_template_not_content():
    ex = nli_example(0)
    text_prompt = TeacherPrompter(ESNLI, ESNLI_CFG, "text").render(ex)
    letter_prompt = TeacherPrompter(ESNLI, ESNLI_CFG, "letter").render(ex)
    assert "(a) entailment\n(b) neutral\n(c) contradiction\nAnswer:" in letter_prompt.text
    assert "Answer (entailment" not in letter_prompt.text  # the label-word line is replaced
    # the label words are shown but are not content: rationales can only pick premise/hypothesis words
    assert letter_prompt.content() == text_prompt.content() == [ex.fields["premise"], ex.fields["hypothesis"]]
    # per-question choices stay content in both formats
    cqa = TeacherPrompter(CQA, CQA_CFG, "letter").render(choice_example(0))
    assert cqa.content()[1:] == ["cupboard", "table", "dog"]


# ---- demonstrations ---------------------------------------------------------------------------

def test_demonstrations_never_contain_the_scored_example():
    pool = [choice_example(i, answer=i % 3) for i in range(6)]
    prompter = TeacherPrompter(CQA, CQA_CFG, "letter", shots=3, demo_pool=pool, seed=0)
    drawn = prompter.describe()["demonstrations"]
    assert len(drawn) == 6  # a label set: balanced, one per label plus one spare per label
    random_draw = TeacherPrompter(CQA, CQA_CFG, "letter", shots=3, demo_pool=pool, seed=0, balanced=False)
    assert len(random_draw.describe()["demonstrations"]) == 4  # shots + 1 spare
    for ex in pool:
        demos = prompter.demonstrations(ex.id)
        assert len(demos) == 3 and ex.id not in {d.id for d in demos}
        p = prompter.render(ex)
        assert p.text.count(ex.fields["question"]) == 1  # only the example itself, at the end
        assert p.content() == [ex.fields["question"], *ex.choices]  # spans point at the example, not the demos
        assert p.text.endswith(CQA.render(ex, CQA_CFG).text)
        for d in demos:  # each demonstration closes with its gold answer in the same format
            assert f"{d.fields['question']}\nAnswer Choices:" in p.text
            assert f"Answer: {prompter.target(d, d.label)}\n\n" in p.text
    # seeded: the same seed draws the same demonstrations
    again = TeacherPrompter(CQA, CQA_CFG, "letter", shots=3, demo_pool=pool, seed=0)
    assert again.describe() == prompter.describe()


def test_chat_template_wraps_the_prompt_and_keeps_content_spans(tokenizer):
    tok = tokenizer  # the session's tokenizer: its chat template is restored below
    saved = tok.chat_template
    assert not saved
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    try:
        prompter = TeacherPrompter(CQA, CQA_CFG, "letter", chat=True, tokenizer=tok)
        ex = choice_example(1)
        p = prompter.render(ex)
        assert p.text.startswith("<s>user\nQuestion: ") and p.text.endswith("<s>assistant\nAnswer:")
        assert "Reply with the letter of the correct option." in p.text
        assert p.content() == [ex.fields["question"], *ex.choices]
    finally:
        tok.chat_template = saved
    with pytest.raises(ConfigError, match="teacher.chat"):
        TeacherPrompter(CQA, CQA_CFG, "letter", chat=True, tokenizer=tok)


# ---- bad input ------------------------------------------------------------------------------

def test_bad_formats_and_shots_name_their_key(tmp_path):
    svamp, svamp_cfg = get_task("svamp"), TaskConfig(name="svamp", path="-")
    with pytest.raises(ConfigError, match="config key 'teacher.format'"):
        TeacherPrompter(svamp, svamp_cfg, "letter")
    with pytest.raises(ConfigError, match="config key 'teacher.format'"):
        build(ExperimentConfig, {"task": {"name": "svamp", "path": "-"}, "teacher": {"format": "letter"}})
    with pytest.raises(ConfigError, match="config key 'teacher.shots'"):
        TeacherPrompter(CQA, CQA_CFG, shots=3, demo_pool=[choice_example(i) for i in range(3)])
    with pytest.raises(ConfigError, match="config key 'teacher.shots'"):
        build(ExperimentConfig, {"task": {"max_train": 4}, "teacher": {"shots": 4}})
    with pytest.raises(ConfigError, match="config key 'teacher.shots'"):
        TeacherConfig(shots=-1)


def test_prompt_longer_than_the_context_names_the_shots_key(qwen, tmp_path):
    long = [Example(id=f"q{i}", fields={"question": "the quick brown fox jumps over the lazy dog " * 8},
                    label="table", choices=("cupboard", "table")) for i in range(6)]
    cfg = TeacherConfig(shots=4, finetune=False, splits=["test"])
    prompter = TeacherPrompter(CQA, CQA_CFG, shots=4, demo_pool=long)
    with pytest.raises(DataError, match=r"teacher.shots.*example q0.*longer than the 256-token context"):
        check_prompt_lengths(qwen, [prompter.render(long[0]).text], ["q0"], cfg)
    # the teach stage refuses before writing anything
    teacher = TeacherConfig(model=build(type(cfg.model), {"name": str(qwen.path)}), shots=4, finetune=False,
                            splits=["test"])
    with pytest.raises(DataError, match="teacher.shots"):
        teach(CQA_CFG, teacher, {"train": long, "validation": [], "test": long[:2]}, tmp_path)
    assert not (tmp_path / "teacher").exists()


# ---- quality report -------------------------------------------------------------------------

def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


def test_collapsed_teacher_is_reported():
    exs = [nli_example(i) for i in range(10)]
    collapsed = [{"id": ex.id, "answer": "neutral", "correct": False} for ex in exs[:9]]
    collapsed.append({"id": exs[9].id, "answer": "entailment", "correct": True})
    q = answer_quality(collapsed, exs)
    assert q["collapsed"] and q["top_answer"] == "neutral" and q["top_answer_share"] == 0.9
    assert q["answer_distribution"] == {"entailment": 1, "neutral": 9} and q["majority_share"] == 1.0
    assert q["accuracy"] == 0.1 and q["ci95"][0] < 0.1 < q["ci95"][1]
    warning = collapse_warning("test", q)
    assert "'neutral'" in warning and "90%" in warning and "\n" not in warning
    # 8 of 10 is not over the 80% line
    balanced = [{"id": ex.id, "answer": "neutral" if i < 8 else "entailment", "correct": i >= 8}
                for i, ex in enumerate(exs)]
    assert collapse_warning("test", answer_quality(balanced, exs)) is None


def test_per_question_choices_count_option_positions():
    exs = [Example(id=f"q{i}", fields={"question": "Where?"}, label=f"place {10 * i + i}",
                   choices=tuple(f"place {10 * i + j}" for j in range(3))) for i in range(3)]
    rows = [{"id": ex.id, "answer": ex.choices[1], "correct": ex.label == ex.choices[1]} for ex in exs]
    q = answer_quality(rows, exs)
    assert q["answer_distribution"] == {"(b)": 3} and q["gold_distribution"] == {"(a)": 1, "(b)": 1, "(c)": 1}


def test_teach_writes_the_quality_report_and_warns_of_collapse(qwen, tmp_path, monkeypatch):
    b_token = [t for t, u in zip(answer_ids(qwen, "(b)"), answer_ids(qwen, "(a)")) if t != u][0]
    prefer_token(qwen, b_token)
    monkeypatch.setattr(answer_module, "load_model", lambda cfg: qwen)  # the biased teacher, in memory
    exs = [choice_example(i, answer=i % 3) for i in range(9)]
    cfg = TeacherConfig(format="letter", finetune=False, splits=["test"])
    metrics = teach(CQA_CFG, cfg, {"train": exs, "validation": [], "test": exs}, tmp_path / "run")
    q = metrics["quality"]["test"]
    assert q["answer_distribution"] == {"table": 9} and q["collapsed"] and q["accuracy"] == pytest.approx(1 / 3)
    collapsed, *missing = metrics["warnings"]
    assert "collapsed" in collapsed  # and beside it, one line per class it never says
    assert len(missing) == 2 and "'cupboard' for 0.0%" in missing[0] and "'dog' for 0.0%" in missing[1]
    assert q["recall"] == {"cupboard": 0.0, "dog": 0.0, "table": 1.0} and q["under_predicted"] == ["cupboard", "dog"]
    assert q["confusion"]["dog"] == {"table": 3}
    assert metrics["prompt"]["format"] == "letter"
    saved = json.loads((tmp_path / "run" / "teacher" / "metrics.json").read_text())
    assert saved["quality"]["test"]["ci95"] == q["ci95"]


# ---- attribution follows the format ---------------------------------------------------------

def test_letter_target_attributes_to_the_right_options_words(tokenizer, tmp_path):
    """A toy teacher whose answer depends on one input token: the word of option (b). The letter
    target "(b)" is attributed, and the top rationale word is that option's word, never a letter."""
    ex = Example(id="q0", fields={"question": "Where would you put a plate after washing it?"},
                 label="table", choices=("cupboard", "table"))
    prompter = TeacherPrompter(CQA, CQA_CFG, "letter")
    prompt = prompter.render(ex)
    start = prompt.text.index("table")
    offsets = tokenizer(prompt.text, return_offsets_mapping=True)["offset_mapping"]
    key = next(t for t, (s, e) in enumerate(offsets) if s <= start < e)
    lm = LoadedModel(ToyLM(len(tokenizer), key), tokenizer, "causal", "toy", "local", "-")
    store = RationaleStore(tmp_path / "train.jsonl", {"config_hash": "x"})
    answers = {"q0": {"answer": "table", "target": "(b)", "correct": True}}
    attribute_split(lm, prompter, [ex], answers, AttributionConfig(target="teacher", bf16=False),
                    RationaleConfig(k=1), store, progress=False)
    row = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[1])
    assert row["target"] == "(b)" and row["rationale_words"] == ["table"]
    assert {w[0] for w in row["words"]} <= set(prompt.text.replace("?", " ").split())
    assert not any(w[0].startswith("(") for w in row["words"])
    # gold target in letter format: the gold option's letter
    store2 = RationaleStore(tmp_path / "gold.jsonl", {"config_hash": "y"})
    attribute_split(lm, prompter, [ex], None, AttributionConfig(target="gold", bf16=False), RationaleConfig(k=1),
                    store2, progress=False)
    assert json.loads((tmp_path / "gold.jsonl").read_text().splitlines()[1])["target"] == "(b)"
