"""Rationale analysis: word overlap numbers computed by hand, and the HTML page's content."""

from __future__ import annotations

import html
import json
import logging
import re
from typing import Any

import pytest

import saliency_distill.analysis as analysis
from saliency_distill.analysis import (
    STOPWORDS,
    contains_answer,
    normalise_words,
    render_html,
    summarise,
    token_prf,
    write_html,
)
from saliency_distill.data import Example
from saliency_distill.errors import DataError

PROMPT_Q1 = (
    "Question: Where do you keep a plate after washing it?\n"
    "Answer Choices:\n(a) cupboard\n(b) table\nAnswer:"
)


def make_row(
    id: str,  # noqa: A002
    prompt: str,
    scored: list[tuple[str, float]],
    rationale: list[str],
    teacher: str,
    gold: str,
    teacher_correct: bool | None = None,
) -> dict[str, Any]:
    """A rationale-store row; each scored word is located after the previous one in ``prompt``."""
    words = []
    pos = 0
    for text, score in scored:
        start = prompt.index(text, pos)
        words.append([text, score, start, start + len(text)])
        pos = start + len(text)
    row = {
        "id": id,
        "split": "train",
        "teacher_answer": teacher,
        "gold": gold,
        "words": words,
        "rationale_words": rationale,
        "rationale": " ".join(rationale),
        "prompt": prompt,
        "config_hash": "ab12",
    }
    if teacher_correct is not None:
        row["teacher_correct"] = teacher_correct
    return row


def q1_row() -> dict[str, Any]:
    scored = [("Where", 0.12), ("do", 0.01), ("you", 0.0), ("keep", 0.3), ("a", 0.02), ("plate", -0.2),
              ("after", 0.01), ("washing", 0.05), ("it", 0.0), ("cupboard", 0.6), ("table", -0.1)]
    return make_row("q1", PROMPT_Q1, scored, ["Where", "keep", "cupboard"], "cupboard", "cupboard", True)


def prompt_spans(page: str) -> list[tuple[str, str, str, str]]:
    """(classes, style, title, text) of every word span inside the prompt blocks of a page."""
    blocks = re.findall(r'<div class="prompt">(.*?)</div>', page, flags=re.S)
    pattern = r'<span class="(w(?: rat)?)" style="([^"]*)" title="([^"]*)">([^<]*)</span>'
    return [m for block in blocks for m in re.findall(pattern, block)]


def prompt_texts(page: str) -> list[str]:
    """The visible text of each prompt block: tags stripped, entities decoded."""
    blocks = re.findall(r'<div class="prompt">(.*?)</div>', page, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", block)) for block in blocks]


# --- words and stopwords -------------------------------------------------------------------


def test_stopwords_are_lowercase_function_words():
    assert isinstance(STOPWORDS, frozenset)
    assert 100 <= len(STOPWORDS) <= 200
    assert all(w == w.lower() and w.strip() == w for w in STOPWORDS)
    assert {"the", "a", "of", "is", "you", "it's"} <= STOPWORDS
    # negations and comparatives carry the answer in many tasks; they are content words
    assert not {"not", "no", "never", "more", "less", "where", "why"} & STOPWORDS


def test_normalise_words_lowercases_and_drops_stopwords():
    text = "Don't put the plate\u2019s lid IN the Cupboard!"
    assert normalise_words(text) == ["don't", "put", "plate's", "lid", "cupboard"]
    assert normalise_words(text, drop_stopwords=False) == ["don't", "put", "the", "plate's", "lid", "in", "the", "cupboard"]
    assert normalise_words("  ...  ") == []
    assert normalise_words("it's 3.5 km") == ["3", "5", "km"]


# --- answer containment --------------------------------------------------------------------


def test_contains_answer():
    rationale = ["Where", "cupboard", "keep"]
    assert contains_answer(rationale, "cupboard")
    assert contains_answer(rationale, "the CUPBOARD")
    assert not contains_answer(rationale, "table")
    assert contains_answer(["table"], "The kitchen table")  # one content word is enough
    assert not contains_answer(["the", "of"], "the park")  # a shared stopword is not


def test_contains_answer_with_stopword_only_answer_uses_all_its_words():
    assert contains_answer(["climb", "up"], "up")
    assert not contains_answer(["climb", "down"], "up")
    assert not contains_answer(["anything"], "")


# --- precision / recall against human rationales ------------------------------------------


def test_token_prf_known_pair():
    # reference content words: {plate, goes, cupboard}; predicted: {plate, cupboard, kitchen}
    p, r, f = token_prf(["plate", "cupboard", "kitchen"], "the plate goes in the cupboard")
    assert (p, r, f) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


def test_token_prf_drops_stopwords_and_case():
    # predicted {plate, cupboard} (the dropped), reference {plate, goes, cupboard}
    p, r, f = token_prf(["Plate", "the", "CUPBOARD"], "the plate goes in the cupboard")
    assert p == pytest.approx(1.0)
    assert r == pytest.approx(2 / 3)
    assert f == pytest.approx(2 * 1.0 * (2 / 3) / (1.0 + 2 / 3))  # 0.8


def test_token_prf_empty_inputs_are_zero():
    assert token_prf([], "plate goes in the cupboard") == (0.0, 0.0, 0.0)
    assert token_prf(["the", "of"], "plate") == (0.0, 0.0, 0.0)
    assert token_prf(["plate"], "") == (0.0, 0.0, 0.0)
    assert token_prf(["plate"], "the of in") == (0.0, 0.0, 0.0)
    assert token_prf(["sink"], "plate") == (0.0, 0.0, 0.0)


# --- summary -------------------------------------------------------------------------------


def summary_fixture() -> tuple[list[dict[str, Any]], dict[str, Example]]:
    choices = ("cupboard", "table", "sink")
    examples = {
        "q1": Example("q1", {"question": "Where do you keep a plate?"}, "cupboard", choices,
                      human_rationale="Plates are kept in the cupboard."),
        "q2": Example("q2", {"question": "Where do you eat?"}, "table", choices),
        "q3": Example("q3", {"question": "Where do dirty dishes go?"}, "sink", choices,
                      human_rationale="Dirty dishes go in the sink."),
        "a1": Example("a1", {"question": "3 apples plus 4 apples?"}, "7"),
    }
    rows = [
        # gold contained, teacher contained, teacher right
        make_row("q1", "x", [], ["Where", "cupboard", "keep"], "cupboard", "cupboard", True),
        # gold contained, teacher's answer not, teacher wrong
        make_row("q2", "x", [], ["plate", "table"], "cupboard", "table", False),
        # neither contained, teacher right
        make_row("q3", "x", [], ["dirty", "dishes"], "sink", "sink", True),
        # free-form: gold contained, teacher right (no teacher_correct flag: compared as strings)
        make_row("a1", "x", [], ["7", "apples"], "7", "7"),
    ]
    return rows, examples


def test_summarise_real_values():
    rows, examples = summary_fixture()
    s = summarise(rows, examples)
    assert s["n_rows"] == 4
    assert s["gold_containment"]["multiple_choice"] == {"n": 3, "percent": pytest.approx(66.67)}
    assert s["gold_containment"]["all"] == {"n": 4, "percent": pytest.approx(75.0)}
    # teacher right on q1, q3, a1 (gold contained in q1, a1); wrong on q2 (contained)
    assert s["gold_containment"]["teacher_correct"] == {"n": 3, "percent": pytest.approx(66.67)}
    assert s["gold_containment"]["teacher_incorrect"] == {"n": 1, "percent": pytest.approx(100.0)}
    assert s["teacher_containment"]["multiple_choice"] == {"n": 3, "percent": pytest.approx(33.33)}
    assert s["teacher_containment"]["all"] == {"n": 4, "percent": pytest.approx(50.0)}
    assert s["teacher_accuracy"] == {"n": 4, "percent": pytest.approx(75.0)}
    # q1: {where, cupboard, keep} vs {plates, kept, cupboard} -> 1/3, 1/3, 1/3
    # q3: {dirty, dishes} vs {dirty, dishes, go, sink}      -> 1, 1/2, 2/3
    hr = s["human_rationale"]
    assert hr["n"] == 2
    assert hr["precision"] == pytest.approx((1 / 3 + 1) / 2, abs=1e-4)
    assert hr["recall"] == pytest.approx((1 / 3 + 1 / 2) / 2, abs=1e-4)
    assert hr["f1"] == pytest.approx((1 / 3 + 2 / 3) / 2, abs=1e-4)
    assert s["mean_rationale_words"] == pytest.approx(9 / 4)
    assert json.loads(json.dumps(s)) == s


def test_summarise_teacher_correct_flag_wins_over_string_match():
    rows, examples = summary_fixture()
    rows[3]["teacher_answer"] = "7.0"  # e.g. an arithmetic answer judged equal by the writer
    rows[3]["teacher_correct"] = True
    assert summarise(rows, examples)["teacher_accuracy"]["percent"] == pytest.approx(75.0)
    del rows[3]["teacher_correct"]
    assert summarise(rows, examples)["teacher_accuracy"]["percent"] == pytest.approx(50.0)


def test_summarise_missing_example_uses_row_gold(caplog: pytest.LogCaptureFixture):
    rows, examples = summary_fixture()
    del examples["q2"]
    with caplog.at_level(logging.WARNING, logger="saliency_distill.analysis.overlap"):
        s = summarise(rows, examples)
    assert "1 of 4 rationale rows have no matching example" in caplog.text
    assert s["gold_containment"]["all"] == {"n": 4, "percent": pytest.approx(75.0)}
    assert s["gold_containment"]["multiple_choice"] == {"n": 2, "percent": pytest.approx(50.0)}


def test_summarise_label_set_outside_the_input_is_not_multiple_choice():
    # NLI: the labels are choices, but only the template names them; the scored words are the
    # premise's and hypothesis's, so a rationale can never contain the answer.
    labels = ("entailment", "neutral", "contradiction")
    premise = "A dog runs in the park."
    examples = {
        "n1": Example("n1", {"premise": premise, "hypothesis": "An animal moves."}, "entailment", labels),
        "c1": Example("c1", {"question": "Where do you eat?"}, "table", ("table", "sink")),
    }
    rows = [
        make_row("n1", premise, [("dog", 0.5), ("runs", 0.3), ("park", 0.1)], ["dog", "runs"],
                 "neutral", "entailment", False),
        make_row("c1", "Where do you eat? table sink", [("eat", 0.2), ("table", 0.9), ("sink", 0.1)],
                 ["table"], "table", "table", True),
    ]
    s = summarise(rows, examples)
    assert s["gold_containment"]["multiple_choice"] == {"n": 1, "percent": pytest.approx(100.0)}
    assert s["teacher_containment"]["multiple_choice"] == {"n": 1, "percent": pytest.approx(100.0)}
    assert s["gold_containment"]["all"] == {"n": 2, "percent": pytest.approx(50.0)}
    s = summarise(rows[:1], examples)
    assert s["gold_containment"]["multiple_choice"] == {"n": 0, "percent": None}


def test_summarise_no_rows():
    s = summarise([], {})
    assert s["n_rows"] == 0
    assert s["gold_containment"]["all"] == {"n": 0, "percent": None}
    assert s["human_rationale"] == {"n": 0, "precision": None, "recall": None, "f1": None}
    assert s["mean_rationale_words"] is None


# --- HTML ----------------------------------------------------------------------------------


def test_html_preserves_template_text_in_order():
    rows = [q1_row(), make_row("q2", "Premise: A & B.\n\nHypothesis: \"C\"?", [("A", 1.0), ("C", 0.5)], ["A"], "yes", "no", False)]
    page = render_html(rows, "demo")
    assert prompt_texts(page) == [rows[0]["prompt"], rows[1]["prompt"]]


def test_html_marks_rationale_words_and_shades_by_score():
    page = render_html([q1_row()], "demo")
    spans = prompt_spans(page)
    assert [text for _, _, _, text in spans] == [w[0] for w in q1_row()["words"]]
    assert [text for cls, _, _, text in spans if cls == "w rat"] == ["Where", "keep", "cupboard"]
    by_text = {text: (style, title) for _, style, title, text in spans}
    # alpha = 0.8 * |score| / max |score| (0.6): cupboard 0.8, keep 0.4, plate (negative) 0.267
    assert by_text["cupboard"][0] == "background-color: rgba(230, 97, 1, 0.800)"
    assert by_text["keep"][0] == "background-color: rgba(230, 97, 1, 0.400)"
    assert by_text["plate"][0] == "background-color: rgba(33, 102, 172, 0.267)"
    assert by_text["you"][0].endswith("0.000)")
    assert by_text["cupboard"][1] == "cupboard: score +0.6"
    assert by_text["plate"][1] == "plate: score -0.2"


def test_html_marks_the_right_occurrence_of_a_repeated_word():
    prompt = "Question: A plate on a plate rack?\nAnswer:"
    row = make_row("r", prompt, [("plate", 0.1), ("plate", 0.9), ("rack", 0.5)], ["plate", "rack"], "x", "x")
    spans = prompt_spans(render_html([row], "demo"))
    assert [cls for cls, *_ in spans] == ["w", "w rat", "w rat"]


def test_html_shows_answers_coloured_by_correctness():
    wrong = make_row("q7", PROMPT_Q1, [("cupboard", 1.0)], ["cupboard"], "cupboard", "table", False)
    page = render_html([q1_row(), wrong], "demo")
    assert '<span class="ans ok">cupboard</span>' in page
    assert '<span class="ans bad">cupboard</span>' in page
    assert '<span class="ans gold">table</span>' in page


def test_html_escapes_everything():
    prompt = "Question: Is <script>alert('x')</script> & \"safe\"?\nAnswer:"
    row = make_row("<b>id</b>", prompt, [("safe", 0.1)], ["safe"], "<i>yes</i>", "no & maybe", False)
    scored = make_row("s", prompt, [("script", 0.5), ("alert", 0.2)], ["alert"], "no", "no", True)
    page = render_html([row, scored], "Report <title>", summary={"note": "<b>x</b>"})
    assert "<script" not in page
    assert "Is &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;" in page  # as template text
    assert "&lt;<span" in page  # and around a scored word
    assert "<i>yes</i>" not in page and "&lt;i&gt;yes&lt;/i&gt;" in page
    assert "<b>id</b>" not in page and "<b>x</b>" not in page
    assert "<title>Report &lt;title&gt;</title>" in page
    assert prompt_texts(page) == [prompt, prompt]


def test_html_summary_table_and_row_limit():
    rows, examples = summary_fixture()
    summary = summarise(rows, examples)
    page_rows = [q1_row(), q1_row(), q1_row()]
    page = render_html(page_rows, "demo", summary=summary, max_rows=2)
    assert '<table class="summary">' in page
    assert "<th>gold_containment.multiple_choice</th><td>66.67% (n=3)</td>" in page
    assert "<th>human_rationale.n</th><td>2</td>" in page
    assert page.count('<section class="example"') == 2
    assert "Showing 2 of 3 examples." in page
    assert '<table class="summary">' not in render_html(page_rows, "demo")
    with pytest.raises(ValueError, match="max_rows"):
        render_html(page_rows, "demo", max_rows=-1)


def test_html_is_self_contained():
    page = render_html([q1_row()], "demo", summary={"n_rows": 1})
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page
    for external in ("<script", "<link", "src=", "http://", "https://", "@import"):
        assert external not in page


def test_html_rejects_bad_offsets():
    row = q1_row()
    row["words"][1][2:] = [500, 502]
    with pytest.raises(DataError, match="rationale row q1: word 1"):
        render_html([row], "demo")
    row = q1_row()
    row["words"][2], row["words"][3] = row["words"][3], row["words"][2]  # out of order
    with pytest.raises(DataError, match="out of order"):
        render_html([row], "demo")


def test_write_html_is_atomic(tmp_path):
    path = write_html(tmp_path / "out" / "rationales.html", [q1_row()], "demo")
    assert path.read_text(encoding="utf-8") == render_html([q1_row()], "demo")
    assert sorted(p.name for p in path.parent.iterdir()) == ["rationales.html"]


def test_public_names():
    assert len(analysis.__all__) == len(set(analysis.__all__))
    for name in analysis.__all__:
        assert hasattr(analysis, name), name


def test_rows_without_teacher_answers_are_left_out_of_teacher_figures():
    from saliency_distill.analysis import summarise
    from saliency_distill.data import Example

    ex = Example(id="1", fields={"q": "Where is the plate?"}, label="cupboard", choices=("cupboard", "table"))
    rows = [{"id": "1", "gold": "cupboard", "teacher_answer": None, "rationale_words": ["plate", "cupboard"]}]
    s = summarise(rows, {"1": ex})
    assert s["gold_containment"]["all"]["percent"] == 100.0
    assert s["teacher_accuracy"]["n"] == 0 and s["teacher_accuracy"]["percent"] is None
    assert s["teacher_containment"]["all"]["n"] == 0
