"""Faithfulness of rationales: span editing, a scorer whose answer hangs on one word, the real
teacher path on a tiny model, and the analyze stage with `analysis.faithfulness=true`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from conftest import write_planets
from torch.testing import assert_close

from saliency_distill.analysis import AnalysisConfig, edit_prompt, score_rows, summarise_faithfulness, teacher_scorer
from saliency_distill.analysis.faithfulness import memoized, random_indices, rationale_indices, variants
from saliency_distill.analysis.stage import store_teacher
from saliency_distill.cli.main import main
from saliency_distill.config import build, help_table
from saliency_distill.data.stopwords import STOPWORDS
from saliency_distill.errors import ConfigError
from saliency_distill.experiment import ExperimentConfig
from saliency_distill.models import load_model
from saliency_distill.rationale import RationaleConfig
from saliency_distill.teacher import sequence_logprobs

PROMPT = "Question: Where do you keep a plate after washing it?\nAnswer Choices:\n(a) cupboard\n(b) table\nAnswer:"
WORDS = ["Where", "do", "you", "keep", "a", "plate", "after", "washing", "it", "cupboard", "table"]


def span(word: str, prompt: str = PROMPT) -> tuple[int, int]:
    start = prompt.index(word)
    return start, start + len(word)


def make_row(ex_id: str, prompt: str, scored: list[tuple[str, float]], rationale: list[str],
             target: str = "(a)") -> dict[str, Any]:
    """A rationale-store row; each scored word is located after the previous one in ``prompt``."""
    words, pos = [], 0
    for text, score in scored:
        start = prompt.index(text, pos)
        words.append([text, score, start, start + len(text)])
        pos = start + len(text)
    return {"id": ex_id, "prompt": prompt, "words": words, "rationale_words": rationale, "target": target}


def plate_row(ex_id: str = "q1", rationale: tuple[str, ...] = ("keep", "plate", "cupboard"),
              prompt: str = PROMPT) -> dict[str, Any]:
    scores = {"keep": 0.5, "plate": -0.4, "cupboard": 0.9, "table": 0.3}
    scored = [(w, scores.get(w, 0.01)) for w in WORDS]
    if set(rationale) != {"keep", "plate", "cupboard"}:  # make the stored scores pick ``rationale``
        scored = [(w, 1.0 if w in rationale else 0.01) for w in WORDS]
    return make_row(ex_id, prompt, scored, list(rationale))


@pytest.mark.parametrize("cut,expected", [
    (["keep"], "Question: Where do you a plate after washing it?"),  # one space left between neighbours
    (["Where"], "Question: do you keep a plate after washing it?"),
    (["it"], "Question: Where do you keep a plate after washing ?"),  # punctuation stays
    (["cupboard"], "(a)\n(b) table"),  # no space left dangling at the end of a line
    (["keep", "a", "plate"], "Question: Where do you after washing it?"),  # adjacent cuts: one space
])
def test_edit_prompt_cuts_words_and_tidies_spaces(cut, expected):
    edited = edit_prompt(PROMPT, [span(w) for w in cut])
    assert expected in edited
    assert edited.endswith("\nAnswer:") and "  " not in edited


def test_edit_prompt_spans_in_any_order_overlapping_at_the_edges():
    keep, plate = span("keep"), span("plate")
    assert edit_prompt(PROMPT, [plate, (keep[0] + 1, keep[1]), keep]) == edit_prompt(PROMPT, [keep, plate])
    assert edit_prompt("red fox", [(0, 3)]) == "fox"  # start of the prompt: the space after goes
    assert edit_prompt("red fox", [(3, 7)]) == "red"  # end of the prompt: the space before goes
    assert edit_prompt("red fox", [(0, 3), (4, 7)]) == ""
    assert edit_prompt("  red fox", [(2, 5)]) == "  fox"  # indentation is template, kept
    assert edit_prompt(PROMPT, []) == PROMPT and edit_prompt(PROMPT, [(5, 5)]) == PROMPT
    with pytest.raises(ValueError, match="outside the prompt"):
        edit_prompt("red fox", [(4, 9)])


def test_rationale_and_random_words_follow_the_store_rules():
    row = plate_row()
    cfg = RationaleConfig(k=3)
    assert [row["words"][i][0] for i in rationale_indices(row, cfg)] == ["keep", "plate", "cupboard"]
    draws = {tuple(random_indices({**row, "id": f"q{i}"}, 3, seed, cfg)) for i in range(4) for seed in range(3)}
    assert len(draws) > 1  # seeded per example and seed, not fixed
    assert random_indices(row, 3, 7, cfg) == random_indices(row, 3, 7, cfg)
    for draw in draws:
        texts = [row["words"][i][0] for i in draw]
        assert len(texts) == 3 and not {t.lower() for t in texts} & STOPWORDS
    built = variants(row, 7, cfg)
    assert built is not None and built["rationale"] == ["keep", "plate", "cupboard"]
    assert "cupboard" not in built["prompts"]["without_rationale"]
    only = built["prompts"]["only_rationale"]
    assert "Question: keep plate ?\nAnswer Choices:\n(a) cupboard\n(b)\nAnswer:" == only


def key_word_scorer(prompts, targets):
    """log p(answer) is high only while the prompt holds the word 'cupboard'."""
    return [-0.2 if "cupboard" in p else -4.0 for p in prompts]


def test_removing_the_key_word_drops_the_score_more_than_random_words():
    prompt = PROMPT.replace("washing it", "washing it at noon")
    words = [*WORDS[:9], "at", "noon", *WORDS[9:]]
    rows = [make_row(f"q{i}", prompt, [(w, 1.0 if w in ("keep", "plate", "cupboard") else 0.01) for w in words],
                     ["keep", "plate", "cupboard"]) for i in range(12)]
    scored = score_rows(rows, key_word_scorer, seed=3, cfg=RationaleConfig(k=3))
    hits = [("cupboard" in r["random"]) for r in scored]
    assert 0 < sum(hits) < len(rows)  # the seed draws the key word for some rows, not all
    for r, hit in zip(scored, hits):
        assert r["comprehensiveness"] == pytest.approx(3.8) and r["sufficiency"] == pytest.approx(0.0)
        assert r["comprehensiveness_random"] == pytest.approx(3.8 if hit else 0.0)
        assert r["sufficiency_random"] == pytest.approx(0.0 if hit else 3.8)
    summary = summarise_faithfulness(scored)
    assert summary["n"] == 12 and summary["skipped"] == 0
    comp, suff = summary["comprehensiveness"], summary["sufficiency"]
    assert comp["saliency"] == pytest.approx(3.8) and comp["random"] == pytest.approx(3.8 * sum(hits) / 12, abs=1e-4)
    assert comp["saliency"] > comp["random"] and suff["saliency"] < suff["random"]
    share = round(100 * (12 - sum(hits)) / 12, 2)
    assert comp["saliency_beats_random"] == suff["saliency_beats_random"] == {"n": 12, "percent": share}
    gap = 3.8 * (12 - sum(hits)) / 12  # the paired difference: 3.8 nats where random words missed the key word
    assert comp["difference"]["mean"] == pytest.approx(gap, abs=1e-4)
    assert suff["difference"]["mean"] == pytest.approx(-gap, abs=1e-4)
    assert 0 < comp["difference"]["lower"] < gap < comp["difference"]["upper"] <= 3.8
    assert -3.8 <= suff["difference"]["lower"] < -gap < suff["difference"]["upper"] < 0

    # A rationale without the key word is no better than random words, and a row without one is skipped.
    wrong = score_rows([plate_row("w", ("keep", "plate", "table")), {**plate_row("e"), "rationale_words": []}],
                       key_word_scorer, seed=3)
    assert wrong[0]["comprehensiveness"] == 0.0 and wrong[0]["sufficiency"] == pytest.approx(3.8)
    assert wrong[1] == {"id": "e", "skipped": "no rationale words"}
    assert summarise_faithfulness(wrong)["comprehensiveness"]["saliency_beats_random"]["percent"] == 0.0


def test_a_memoized_scorer_scores_the_prompts_two_methods_share_once():
    seen: list[str] = []

    def counting(prompts, targets):
        seen.extend(prompts)
        return key_word_scorer(prompts, targets)

    scorer = memoized(counting)
    rows = [plate_row(f"q{i}") for i in range(6)]
    other = [plate_row(f"q{i}", ("keep", "plate", "table")) for i in range(6)]  # another method's words
    first = score_rows(rows, scorer, seed=3, cfg=RationaleConfig(k=3))
    assert len(seen) == len(set(seen))  # every distinct prompt once
    cold = len(seen)
    second = score_rows(other, scorer, seed=3, cfg=RationaleConfig(k=3))
    # the whole prompt and the random variants are the first method's: at most the two rationale variants
    # (one prompt each here: every row has the same prompt) are new, against 5 or more scored alone
    alone = len(seen) - cold
    score_rows(other, counting, seed=3, cfg=RationaleConfig(k=3))
    assert alone <= 2 < len(seen) - cold - alone
    assert second == score_rows(other, key_word_scorer, seed=3, cfg=RationaleConfig(k=3))  # the same figures
    assert first == score_rows(rows, key_word_scorer, seed=3, cfg=RationaleConfig(k=3))
    assert memoized(counting)(["a", "b", "a"], ["x", "x", "x"]) == key_word_scorer(["a", "b", "a"], ["x"] * 3)


@pytest.fixture(scope="module")
def teacher(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["qwen2"]))


def test_the_teacher_scores_equal_the_differences_of_log_probabilities(teacher):
    mug = PROMPT.replace("plate", "mug").replace("table", "sink")
    rows = [plate_row("q1", ("Where", "washing", "table")),
            make_row("q3", mug, [(w.replace("plate", "mug").replace("table", "sink"), 0.5) for w in WORDS],
                     ["Where", "keep", "mug"], target="(b)")]
    scored = score_rows(rows, teacher_scorer(teacher, batch_size=4), seed=1)
    assert [r["id"] for r in scored] == ["q1", "q3"]
    for row, r in zip(rows, scored):
        prompts = variants(row, 1)["prompts"]  # type: ignore[index]
        # one pair at a time, no padding: the reference for the batched scores
        alone = {name: sequence_logprobs(teacher, [p], [row["target"]], batch_size=1)[0][0]
                 for name, p in prompts.items()}
        got = torch.tensor([r["comprehensiveness"], r["comprehensiveness_random"], r["sufficiency"],
                            r["sufficiency_random"]])
        want = torch.tensor([alone["full"] - alone["without_rationale"], alone["full"] - alone["without_random"],
                             alone["full"] - alone["only_rationale"], alone["full"] - alone["only_random"]])
        assert_close(got, want, atol=1e-4, rtol=0)
        assert r["logprob"]["full"] < 0 and r["comprehensiveness"] != 0.0
    assert score_rows(rows, teacher_scorer(teacher, batch_size=4), seed=1) == scored  # deterministic


def test_sufficiency_of_the_whole_content_is_zero(teacher):
    cfg = RationaleConfig(k=len(WORDS), drop_stopwords=False, unique=False)
    row = make_row("all", PROMPT, [(w, 1.0) for w in WORDS], list(WORDS))
    (r,) = score_rows([row], teacher_scorer(teacher), seed=0, cfg=cfg)
    assert r["rationale"] == r["random"] == WORDS
    assert_close(torch.tensor([r["sufficiency"], r["sufficiency_random"]]), torch.zeros(2), atol=1e-6, rtol=0)
    bare = sequence_logprobs(teacher, [variants(row, 0, cfg)["prompts"]["without_rationale"]], ["(a)"])[0][0]  # type: ignore[index]
    full = sequence_logprobs(teacher, [PROMPT], ["(a)"])[0][0]
    assert_close(torch.tensor(r["comprehensiveness"]), torch.tensor(full - bare), atol=1e-4, rtol=0)


def test_config_keys_and_a_changed_teacher_is_refused(tmp_path):
    keys = {k for k, _, _ in help_table(ExperimentConfig)}
    assert {"analysis.faithfulness", "analysis.faithfulness_max_examples", "analysis.faithfulness_seed"} <= keys
    assert build(ExperimentConfig, {}).analysis == AnalysisConfig(faithfulness=False)
    with pytest.raises(ConfigError, match="analysis.faithfulness_max_examples"):
        build(ExperimentConfig, {"analysis": {"faithfulness_max_examples": 0}})
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "metrics.json").write_text(json.dumps({"config_hash": "new", "model_path": "/m"}))
    header = {"teacher": "t", "teacher_hash": "old", "teacher_model": {"name": "t", "dtype": "bfloat16"}}
    with pytest.raises(ConfigError, match="teacher changed"):
        store_teacher(tmp_path, header)
    model = store_teacher(tmp_path, {**header, "teacher_hash": "new"})
    assert model.name == "/m" and model.dtype == "bfloat16"
    assert store_teacher(tmp_path, {**header, "teacher_hash": None}).name == "t"


@pytest.fixture
def run_args(tmp_path, tiny_model_dirs):
    data = write_planets(tmp_path)
    return [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={tiny_model_dirs['qwen2']}", "teacher.finetune=false",
            "progress=false", "rationale.k=3"]


def test_analyze_with_faithfulness_writes_the_figures_and_resumes(tmp_path, run_args, capsys, monkeypatch,
                                                                 tiny_model_dirs):
    import saliency_distill.analysis.stage as stage

    loads = []
    monkeypatch.setattr(stage, "load_model", lambda cfg: loads.append(cfg.name) or load_model(cfg))
    assert main(["-q", "attribute", *run_args]) == 0
    assert main(["-q", "analyze", *run_args]) == 0  # off by default: no teacher, no figures
    analysis = tmp_path / "run" / "analysis"
    assert "faithfulness" not in json.loads((analysis / "train.json").read_text()) and loads == []
    capsys.readouterr()

    on = [*run_args, "analysis.faithfulness=true", "analysis.faithfulness_max_examples=4"]
    assert main(["-q", "analyze", *on]) == 0
    assert "comprehensiveness (log p drop, higher = more faithful): rationale" in capsys.readouterr().out
    faith = json.loads((analysis / "train.json").read_text())["faithfulness"]
    assert faith["n"] == 4 and faith["seed"] == 0 and loads == [str(tiny_model_dirs["qwen2"])]
    for name in ("comprehensiveness", "sufficiency"):
        assert isinstance(faith[name]["saliency"], float) and isinstance(faith[name]["random"], float)
        assert faith[name]["saliency_beats_random"]["n"] == 4
    lines = (analysis / "train.faithfulness.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[1:]]
    assert len(rows) == 4 and all(len(r["rationale"]) == len(r["random"]) >= 1 for r in rows)
    mean = sum(r["comprehensiveness"] for r in rows) / 4
    assert faith["comprehensiveness"]["saliency"] == pytest.approx(mean, abs=1e-4)
    page = (analysis / "train.html").read_text()
    assert '<table class="summary faithfulness">' in page and "faithfulness (n=4)" in page

    # Again: every row is in the file, no teacher is loaded; more rows: only the new ones are scored.
    assert main(["-q", "analyze", *on]) == 0
    assert json.loads((analysis / "train.json").read_text())["faithfulness"] == faith and len(loads) == 1
    assert main(["-q", "analyze", *on[:-1], "analysis.faithfulness_max_examples=6"]) == 0
    lines6 = (analysis / "train.faithfulness.jsonl").read_text().splitlines()
    assert len(loads) == 2 and len(lines6) == 7 and lines6[:5] == lines
    # Another seed replaces the file.
    assert main(["-q", "analyze", *on, "analysis.faithfulness_seed=5"]) == 0
    assert len((analysis / "train.faithfulness.jsonl").read_text().splitlines()) == 5


def test_mean_interval_covers_the_mean_and_shrinks_with_more_rows():
    import numpy as np

    from saliency_distill.analysis.faithfulness import mean_interval

    rng = np.random.default_rng(1)
    small, large = mean_interval(list(rng.normal(0.5, 1.0, 40))), mean_interval(list(rng.normal(0.5, 1.0, 4000)))
    for d in (small, large):
        assert d["lower"] < d["mean"] < d["upper"]
    assert large["upper"] - large["lower"] < 0.25 * (small["upper"] - small["lower"])
    assert large["lower"] < 0.5 < large["upper"]  # the true mean
    assert mean_interval([]) is None and mean_interval([1.0, 1.0]) == mean_interval([1.0, 1.0])
