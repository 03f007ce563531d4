"""One self-contained HTML page showing what the teacher looked at, example by example.

Each prompt is shown as the model saw it. Content words are shaded by their attribution score
(orange for positive, blue for negative, opacity proportional to ``|score|`` over the largest
``|score|`` of that example) and carry the score in a tooltip; rationale words are bold,
underlined and outlined. Template text ("Question:", "(a)", "Answer:") is rebuilt from the
words' character offsets over ``prompt`` and left unshaded. The page has inline CSS only: no
scripts, no external assets, so it can be opened from disk or attached to a report.
"""

from __future__ import annotations

import html
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..io import atomic_open
from .overlap import format_difference, teacher_was_correct

logger = logging.getLogger(__name__)

POSITIVE_RGB = (230, 97, 1)  # orange
NEGATIVE_RGB = (33, 102, 172)  # blue
MAX_ALPHA = 0.8  # the strongest word keeps its text readable

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; }
table.summary { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
table.summary th { background: #f3f3f3; font-weight: 600; }
.legend { font-size: 0.9em; color: #555; }
.legend span { padding: 0 0.3em; border-radius: 2px; }
section.example { border: 1px solid #ddd; border-radius: 6px; margin: 1.2em 0; padding: 0.8em 1em; }
section.example header { font-size: 0.9em; margin-bottom: 0.6em; color: #444; }
.id { font-family: ui-monospace, monospace; font-weight: 600; color: #222; }
.split { background: #eee; border-radius: 3px; padding: 0 0.4em; margin-left: 0.4em; }
.ans { font-weight: 600; padding: 0 0.35em; border-radius: 3px; }
.ans.ok { background: #d8f3dc; color: #1b5e20; }
.ans.bad { background: #fde2e1; color: #b71c1c; }
.ans.gold { background: #e8eaf6; color: #1a237e; }
.prompt { white-space: pre-wrap; line-height: 1.9; font-size: 1em; }
.w { border-radius: 2px; padding: 0.05em 0; }
.w.rat { font-weight: 700; text-decoration: underline; text-underline-offset: 3px;
         outline: 1.5px solid #222; outline-offset: 1px; }
.rationale { margin-top: 0.6em; font-size: 0.9em; color: #444; }
.note { color: #777; font-style: italic; }
"""


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rgba(rgb: tuple[int, int, int], alpha: float) -> str:
    return f"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.3f})"


def _score(value: Any) -> float:
    """A word's score as a float; anything non-finite or not a number shades as 0."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return 0.0
    return score if math.isfinite(score) else 0.0


def _tooltip(text: Any, raw_score: Any) -> str:
    if isinstance(raw_score, (int, float)) and not isinstance(raw_score, bool):
        return f"{text}: score {raw_score:+.4g}"
    return f"{text}: score {raw_score}"


def rationale_positions(words: Sequence[Sequence[Any]], rationale_words: Sequence[str]) -> set[int]:
    """Indices of ``words`` that are the rationale.

    The store keeps the rationale as texts, and a text may occur twice in a prompt. The
    extractor takes the top-k words by score (or by ``|score|`` for signed methods), so when
    one of those rankings reproduces ``rationale_words`` exactly, its indices are the answer.
    Otherwise each rationale word is matched, in order, to the next word with the same
    (case-insensitive) text.
    """
    k = len(rationale_words)
    if k == 0:
        return set()
    texts = [str(w[0]) for w in words]
    scores = [_score(w[1]) for w in words]
    for key in (lambda i: scores[i], lambda i: abs(scores[i])):
        top = sorted(sorted(range(len(words)), key=lambda i: -key(i))[:k])
        if [texts[i] for i in top] == list(rationale_words):
            return set(top)
    chosen: set[int] = set()
    pos = 0
    for target in rationale_words:
        wanted = str(target).casefold()
        for i in range(pos, len(texts)):
            if texts[i].casefold() == wanted:
                chosen.add(i)
                pos = i + 1
                break
    if len(chosen) < k:
        logger.debug("%d of %d rationale words not found among the prompt's words", k - len(chosen), k)
    return chosen


def render_prompt(row: Mapping[str, Any]) -> str:
    """The row's prompt as HTML: template text plain, content words shaded and tooltipped."""
    row_id = row.get("id", "?")
    prompt = str(row.get("prompt") or "")
    words = list(row.get("words") or [])
    for i, word in enumerate(words):
        if not isinstance(word, (list, tuple)) or len(word) != 4:
            raise DataError(f"rationale row {row_id}: word {i} is not [text, score, start, end]: {word!r}")
    rationale = rationale_positions(words, list(row.get("rationale_words") or []))
    peak = max((abs(_score(w[1])) for w in words), default=0.0)

    parts: list[str] = []
    last = 0
    for i, (text, raw_score, start, end) in enumerate(words):
        if not (isinstance(start, int) and isinstance(end, int) and last <= start <= end <= len(prompt)):
            raise DataError(
                f"rationale row {row_id}: word {i} {text!r} has span ({start!r}, {end!r}), out of order "
                f"or outside the prompt ({len(prompt)} characters)"
            )
        shown = prompt[start:end]
        if shown != text:
            logger.debug("rationale row %s: word %d is %r in the store but %r in the prompt", row_id, i, text, shown)
        parts.append(_escape(prompt[last:start]))
        score = _score(raw_score)
        alpha = MAX_ALPHA * abs(score) / peak if peak > 0 else 0.0
        colour = _rgba(NEGATIVE_RGB if score < 0 else POSITIVE_RGB, alpha)
        classes = "w rat" if i in rationale else "w"
        parts.append(
            f'<span class="{classes}" style="background-color: {colour}" '
            f'title="{_escape(_tooltip(text, raw_score))}">{_escape(shown)}</span>'
        )
        last = end
    parts.append(_escape(prompt[last:]))
    return "".join(parts)


def _summary_cell(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _escape(value)


def _summary_rows(summary: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a nested summary into (dotted key, cell HTML); ``{n, percent}`` pairs stay one cell."""
    out: list[tuple[str, str]] = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and set(value) == {"n", "percent"}:
            pct = value["percent"]
            cell = "&ndash;" if pct is None else f"{pct:.2f}%"
            out.append((name, f"{cell} (n={_escape(value['n'])})"))
        elif isinstance(value, Mapping):
            out.extend(_summary_rows(value, prefix=f"{name}."))
        else:
            out.append((name, _summary_cell(value)))
    return out


def _render_summary(summary: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th>{_escape(k)}</th><td>{v}</td></tr>" for k, v in _summary_rows(summary))
    return f'<table class="summary">{body}</table>'


def _render_faithfulness(faith: Mapping[str, Any]) -> str:
    """Saliency rationale against random words, for both faithfulness figures (signs spelled out)."""
    body = []
    for name, meaning in (("comprehensiveness", "log p drop with the words cut out; higher = more necessary"),
                          ("sufficiency", "log p drop with only these words kept; lower = more sufficient")):
        fig = faith.get(name) or {}
        pct = (fig.get("saliency_beats_random") or {}).get("percent")
        wins = "&ndash;" if pct is None else f"{pct:.2f}%"
        gap = format_difference(fig.get("difference")) or "&ndash;"
        body.append(f"<tr><th>{name} ({meaning})</th><td>{_summary_cell(fig.get('saliency'))}</td>"
                    f"<td>{_summary_cell(fig.get('random'))}</td><td>{gap}</td><td>{wins}</td></tr>")
    head = (f"<tr><th>faithfulness (n={_escape(faith.get('n'))})</th><th>saliency rationale</th>"
            "<th>random words</th><th>difference (95% CI)</th><th>rationale better</th></tr>")
    return f'<table class="summary faithfulness">{head}{"".join(body)}</table>'


def _render_example(row: Mapping[str, Any]) -> str:
    gold = str(row.get("gold") or "")
    teacher = str(row.get("teacher_answer") or "")
    verdict = "ok" if teacher_was_correct(row, gold) else "bad"
    split = f'<span class="split">{_escape(row["split"])}</span>' if row.get("split") else ""
    rationale = row.get("rationale")
    if rationale is None:
        rationale = " ".join(str(w) for w in row.get("rationale_words") or [])
    return (
        f'<section class="example" id="ex-{_escape(row.get("id", ""))}">'
        f'<header><span class="id">{_escape(row.get("id", "?"))}</span>{split} &middot; '
        f'teacher: <span class="ans {verdict}">{_escape(teacher) or "(none)"}</span> &middot; '
        f'gold: <span class="ans gold">{_escape(gold)}</span></header>'
        f'<div class="prompt">{render_prompt(row)}</div>'
        f'<div class="rationale">Rationale: <b>{_escape(rationale)}</b></div>'
        "</section>"
    )


def render_html(
    rows: list[dict[str, Any]],
    title: str,
    summary: dict[str, Any] | None = None,
    max_rows: int = 200,
) -> str:
    """A self-contained HTML page of the first ``max_rows`` rationale-store rows.

    ``summary`` (e.g. from :func:`~saliency_distill.analysis.overlap.summarise`) is shown as a
    table at the top, its ``faithfulness`` figures (if any) as a table of their own. Every piece
    of text from the rows is HTML-escaped.
    """
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, got {max_rows}")
    shown = rows[:max_rows]
    if len(rows) > len(shown):
        logger.debug("rendering the first %d of %d rationale rows", len(shown), len(rows))
    legend = (
        '<p class="legend">Shading: <span style="background-color: '
        f'{_rgba(POSITIVE_RGB, 0.6)}">positive</span> / <span style="background-color: '
        f'{_rgba(NEGATIVE_RGB, 0.6)}">negative</span> score, opacity &prop; |score| within each example; '
        '<span class="w rat">rationale words</span> bold and outlined; hover a word for its score. '
        'Teacher answer <span class="ans ok">correct</span> / <span class="ans bad">wrong</span>.</p>'
    )
    count = f'<p class="note">Showing {len(shown)} of {len(rows)} examples.</p>'
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_escape(title)}</h1>",
        _render_summary({k: v for k, v in summary.items() if k != "faithfulness"}) if summary else "",
        _render_faithfulness(summary["faithfulness"]) if summary and summary.get("faithfulness") else "",
        legend,
        count,
        *(_render_example(row) for row in shown),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_html(
    path: str | os.PathLike[str],
    rows: list[dict[str, Any]],
    title: str,
    summary: dict[str, Any] | None = None,
    max_rows: int = 200,
) -> Path:
    """Render with :func:`render_html` and write the page atomically; returns the path."""
    path = Path(path)
    page = render_html(rows, title, summary=summary, max_rows=max_rows)
    with atomic_open(path) as f:
        f.write(page)
    logger.debug("wrote %s (%d examples)", path, min(len(rows), max(max_rows, 0)))
    return path
