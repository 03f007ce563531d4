"""A dataset whose text is markup stays text: a question holding ``<script>alert(1)</script>``
and both quote kinds (written to break out of ``"..."`` and ``'...'`` attributes), labels and
ids like it, go the way a run takes them (prompt rendering, word scores, top-k rationale,
teacher answer distribution, overlap summary) into the heatmap page of ``analyze`` and into
``report.html``, and both pages must show it without running or re-shaping any of it: no
``<script`` tag, no event-handler attribute, every attribute value read back whole."""

from __future__ import annotations

import html
import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from saliency_distill.analysis import summarise, write_html
from saliency_distill.data import make_example, render
from saliency_distill.rationale.extract import RationaleConfig, select
from saliency_distill.rationale.words import word_scores
from saliency_distill.reporting import write_report
from saliency_distill.teacher.quality import answer_quality

SCRIPT = "<script>alert(1)</script>"
DOUBLE = '" onmouseover="alert(2)" data-evil="'  # closes a "..." attribute and adds a handler
SINGLE = "' onfocus='alert(3)' autofocus data-evil='"  # the same for a '...' attribute
QUESTION = f"Isn't {SCRIPT} \"quoted\" or 'single'? {DOUBLE} and {SINGLE} end"
CHOICES = (f"yes {SCRIPT}", f"no {DOUBLE}{SINGLE}")
TEMPLATE = "Question: {question}\nAnswer Choices:\n{choices}\nAnswer:"
SPLIT = "tr\"ai'n"  # a split name (the heatmap page's file name) with both quotes


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, entities decoded."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def attrs(self, tag: str, **having: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in having.items())]


def assert_inert(page: str) -> Page:
    """No script element, raw or parsed, and none of the attributes the data tries to add."""
    assert "<script" not in page.lower()
    parsed = Page(page)
    assert "script" not in {tag for tag, _ in parsed.tags}
    names = {name for _, attrs in parsed.tags for name in attrs}
    assert not [n for n in names if n.startswith("on") or n in ("autofocus", "data-evil")], names
    return parsed


def hostile_run(run: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    """Four examples, their rationale-store rows as the attribute stage makes them, and the
    teacher's answers (always the first, hostile, option: a collapsed teacher)."""
    examples = [make_example(f"row {i}", f"q{i}{DOUBLE}{SINGLE}", {"question": QUESTION}, i % 2, list(CHOICES))
                for i in range(4)]
    rows = []
    for i, ex in enumerate(examples):
        prompt = render(TEMPLATE, ex)
        offsets = [(m.start(), m.end()) for m in re.finditer(r"\S+", prompt.text)]
        words = word_scores(prompt.text, prompt.content_spans, offsets, [(-1) ** k * (k % 7) / 7 for k in range(len(offsets))])
        chosen = select(words, RationaleConfig(k=4))
        rows.append({"id": ex.id, "split": SPLIT, "teacher_answer": CHOICES[0], "gold": ex.label,
                     "teacher_correct": i % 2 == 0, "prompt": prompt.text,
                     "words": [[w.text, round(w.score, 6), w.start, w.end] for w in words],
                     "rationale_words": [w.text for w in chosen], "rationale": " ".join(w.text for w in chosen)})
    summary = summarise(rows, {ex.id: ex for ex in examples})
    summary["store"] = {"teacher": f"model {SCRIPT}", "method": "saliency", "k": 4}
    write_html(run / "analysis" / f"{SPLIT}.html", rows, f"{SPLIT}: rationales", summary=summary)
    teacher_rows = [{"id": ex.id, "answer": CHOICES[0], "correct": ex.label == CHOICES[0]} for ex in examples]
    teacher = {"model": "t", "accuracy": 0.5, "quality": {SPLIT: answer_quality(teacher_rows, examples)}}
    records = [{"mode": "standard", "seed": s, "accuracy": 0.5, "ranked_accuracy": None, "n": 4, "train_seconds": 1.0}
               for s in range(2)]
    write_report(run / "report", records, config={"task": {"name": "file"}}, teacher=teacher, analysis=summary,
                 environment={"python": "3.11"}, title="hostile")
    return examples, rows


def test_hostile_rows_render_inert_in_the_heatmap_page(tmp_path):
    examples, rows = hostile_run(tmp_path)
    page = (tmp_path / "analysis" / f"{SPLIT}.html").read_text(encoding="utf-8")
    parsed = assert_inert(page)
    # every attribute the data reaches reads back whole
    assert [a["id"] for a in parsed.attrs("section", **{"class": "example"})] == [f"ex-{ex.id}" for ex in examples]
    spans = [a for a in parsed.attrs("span") if (a.get("class") or "").startswith("w")]
    words = [w for row in rows for w in row["words"]]
    assert any("'" in w[0] for w in words)  # "Isn't": a word with a quote in its tooltip
    assert [a["title"] for a in spans if a.get("style")] == [f"{w[0]}: score {w[1]:+.4g}" for w in words]
    # and the text shows as it was written
    blocks = re.findall(r'<div class="prompt">(.*?)</div>', page, flags=re.S)
    assert [html.unescape(re.sub(r"<[^>]+>", "", b)) for b in blocks] == [row["prompt"] for row in rows]
    text = "".join(parsed.texts)
    assert all(ex.id in text for ex in examples) and CHOICES[0] in text and CHOICES[1] in text
    assert f"<title>{html.escape(SPLIT)}: rationales</title>" in page


def test_hostile_rows_render_inert_in_report_html(tmp_path):
    hostile_run(tmp_path)
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    parsed = assert_inert(page)
    # the teacher's answers and the gold labels are the dataset's text, shown as text
    text = "".join(parsed.texts)
    assert f"Collapsed teacher: it answers {CHOICES[0]} for 100% of this split." in text
    assert f"{SPLIT} split" in text and "model <script>alert(1)</script>" in text
    distribution = re.search(r'<table class="distribution">(.*?)</table>', page, re.S).group(1)
    assert [html.unescape(h) for h in re.findall(r"<tr><th>([^<]*)</th><td>", distribution)] == sorted(CHOICES)
    # the link to the heatmap page keeps its quotes inside the href, and leads to the page
    links = parsed.attrs("a", **{"class": "heatmap"})
    assert [a["href"] for a in links] == ["../analysis/tr%22ai%27n.html"]
    assert (tmp_path / "report" / urllib.parse.unquote(links[0]["href"])).resolve() == \
        (tmp_path / "analysis" / f"{SPLIT}.html").resolve()
