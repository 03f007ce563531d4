"""HTML sections of ``report.html`` that describe the run rather than the students: the teacher's
quality, the rationale analysis, links to the heatmap pages, the environment.

They read JSON written by earlier stages (``teacher/metrics.json``, ``analysis/<split>.json``),
which older runs wrote with fewer keys, so every section shows what is there and skips the rest
instead of failing. Every string from the data goes through :func:`esc`.
"""

from __future__ import annotations

import html
import math
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..analysis.overlap import format_difference

NONE = "&ndash;"
ANALYSIS_FOLDER = "analysis"  # beside the report folder in a run folder


def esc(value: Any) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def share(entry: Any) -> str:
    """``62.30% (n = 300)`` from a ``{"n", "percent"}`` summary entry; a dash without a number."""
    if not isinstance(entry, Mapping) or _number(entry.get("percent")) is None:
        return NONE
    n = entry.get("n")
    return f"{float(entry['percent']):.2f}%" + (f" (n = {esc(n)})" if n is not None else "")


def _rows(pairs: Sequence[tuple[str, str]], cls: str) -> str:
    """A two-column table; labels are escaped here, values must already be HTML."""
    body = "".join(f"<tr><th>{esc(label)}</th><td>{value}</td></tr>" for label, value in pairs)
    return f'<table class="{cls}">{body}</table>'


def _distribution(quality: Mapping[str, Any]) -> str:
    """The teacher's answers next to the gold ones, counts and a bar for each share of the split."""
    answers = quality.get("answer_distribution") or {}
    gold = quality.get("gold_distribution") or {}
    if not isinstance(answers, Mapping) or not isinstance(gold, Mapping) or not (answers or gold):
        return ""
    n = _number(quality.get("n")) or max(1.0, float(sum(v for v in answers.values() if _number(v) is not None)))
    body = []
    for key in dict.fromkeys([*gold, *answers]):
        cells = [f"<th>{esc(key)}</th>"]
        for counts, cls in ((answers, "teacher"), (gold, "gold")):
            count = _number(counts.get(key))
            if count is None:
                cells.append(f"<td>{NONE}</td>")
                continue
            width = min(100.0, 100.0 * count / n)
            cells.append(f'<td><span class="bar {cls}" style="width: {width:.1f}px"></span> {count:g} '
                         f'<span class="muted">({width:.1f}%)</span></td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    head = "<tr><th>answer</th><th>teacher</th><th>gold</th></tr>"
    return f'<table class="distribution">{head}{"".join(body)}</table>'


def _split_quality(split: str, quality: Mapping[str, Any]) -> str:
    accuracy, ci = _number(quality.get("accuracy")), quality.get("ci95")
    text = NONE if accuracy is None else f"{100 * accuracy:.2f}%"
    if isinstance(ci, Sequence) and len(ci) == 2 and all(_number(c) is not None for c in ci):
        text += f" (95% Wilson interval {100 * ci[0]:.1f}&ndash;{100 * ci[1]:.1f}%)"
    if quality.get("n") is not None:
        text += f", n = {esc(quality['n'])}"
    if split == "pool" and accuracy is None:  # inputs without labels: no accuracy to show
        parts = [f"<h3>{esc(split)}</h3>", f"<p>{esc(quality.get('n'))} inputs without labels; the teacher's answers "
                 "below are what the pool modes learn.</p>"]
    else:
        parts = [f"<h3>{esc(split)} split</h3>", f"<p>Accuracy {text}.</p>"]
    if quality.get("collapsed"):
        parts.append(f'<p class="warning">Collapsed teacher: it answers {esc(quality.get("top_answer"))} for '
                     f"{100 * (_number(quality.get('top_answer_share')) or 0):.0f}% of this split.</p>")
    majority = _number(quality.get("majority_share"))
    if majority is not None:
        parts.append(f'<p class="muted">Majority class: {100 * majority:.1f}% of the gold answers.</p>')
    parts.append(_distribution(quality))
    parts.append(_recall(quality))
    return "".join(parts)


def _recall(quality: Mapping[str, Any]) -> str:
    """Recall per gold class, a warning line per class the teacher under-predicts, and the
    confusion matrix of a label set (gold in rows)."""
    recall = quality.get("recall")
    if not isinstance(recall, Mapping) or not recall:
        return ""

    def listed(values: Mapping[str, Any]) -> str:
        return ", ".join(f"{esc(c)} {100 * (_number(v) or 0.0):.1f}%" for c, v in values.items())

    parts = [f"<p>Recall per gold class: {listed(recall)}.</p>"]
    for c in quality.get("under_predicted") or ():
        parts.append(f'<p class="warning">The teacher answers {esc(c)} at under a third of its gold share: '
                     "students distilled from it rarely see that class.</p>")
    before = quality.get("uncalibrated")
    if isinstance(before, Mapping) and (accuracy := _number(before.get("accuracy"))) is not None:
        recall_before = f", recall {listed(before['recall'])}" if isinstance(before.get("recall"), Mapping) else ""
        parts.append(f'<p class="muted">Before calibration: accuracy {100 * accuracy:.2f}%{recall_before}.</p>')
    confusion = quality.get("confusion")
    if isinstance(confusion, Mapping) and confusion:
        said = list(dict.fromkeys(p for row in confusion.values() if isinstance(row, Mapping) for p in row))
        head = "<tr><th>gold / teacher</th>" + "".join(f"<th>{esc(p)}</th>" for p in said) + "</tr>"
        body = "".join(
            f"<tr><th>{esc(g)}</th>" + "".join(f"<td>{esc(row.get(p, 0))}</td>" for p in said) + "</tr>"
            for g, row in confusion.items() if isinstance(row, Mapping))
        parts.append(f'<table class="confusion">{head}{body}</table>')
    return "".join(parts)


def teacher_section(teacher: Mapping[str, Any] | None) -> str:
    """Who the teacher is, its test accuracy, and per split in ``teacher["quality"]`` (the
    ``quality`` entry of ``teacher/metrics.json``: ``{split: {accuracy, n, ci95,
    answer_distribution, gold_distribution, ...}}``) the accuracy and the answer distribution."""
    if not teacher or "model" not in teacher:
        return '<p class="muted">No teacher metrics in this run.</p>'
    facts = [("model", f"<code>{esc(teacher.get('model') or 'unknown')}</code>")]
    if teacher.get("finetuned") is not None:
        facts.append(("fine-tuned", "yes" if teacher["finetuned"] else "no"))
    accuracy = _number(teacher.get("accuracy"))
    facts.append(("test accuracy", NONE if accuracy is None else f"{100 * accuracy:.2f}%"))
    parts = [_rows(facts, "facts")]
    quality = teacher.get("quality")
    if isinstance(quality, Mapping):
        parts += [_split_quality(str(split), q) for split, q in quality.items() if isinstance(q, Mapping)]
    return "".join(parts)


def _containment(section: Any) -> str:
    if not isinstance(section, Mapping):
        return NONE
    parts = [f"{share(section.get(key))} {label}" for key, label in
             (("multiple_choice", "of multiple-choice rows"), ("all", "of all rows"))
             if share(section.get(key)) != NONE]
    return "; ".join(parts) or NONE


def _human(section: Any) -> str:
    if not isinstance(section, Mapping):
        return NONE
    scores = [f"{name} {v:.3f}" for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "F1"))
              if (v := _number(section.get(key))) is not None]
    n = f" (n = {esc(section['n'])})" if section.get("n") is not None else ""
    return ", ".join(scores) + n if scores else NONE


def analysis_figures(analysis: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, HTML value) of each headline figure of an analysis summary that is present."""
    gold = analysis.get("gold_containment") if isinstance(analysis.get("gold_containment"), Mapping) else {}
    figures = [
        ("rows analysed", esc(analysis["n_rows"]) if analysis.get("n_rows") is not None else NONE),
        ("gold answer in the rationale", _containment(gold)),
        ("... when the teacher was right", share(gold.get("teacher_correct"))),
        ("... when the teacher was wrong", share(gold.get("teacher_incorrect"))),
        ("teacher's answer in the rationale", _containment(analysis.get("teacher_containment"))),
        ("rationale words vs human rationale", _human(analysis.get("human_rationale"))),
        ("teacher accuracy on these rows", share(analysis.get("teacher_accuracy"))),
    ]
    if (length := _number(analysis.get("mean_rationale_words"))) is not None:
        figures.append(("mean rationale length", f"{length:.1f} words"))
    store = analysis.get("store")
    if isinstance(store, Mapping):
        made = ", ".join(f"{esc(k)} {esc(v)}" for k, v in store.items() if v is not None and k != "config_hash")
        figures.append(("rationales made by", made or NONE))
    return [(label, value) for label, value in figures if value != NONE]


def faithfulness_table(faith: Mapping[str, Any]) -> str:
    """Comprehensiveness and sufficiency of the saliency rationale against random words."""
    body = []
    for name, meaning in (("comprehensiveness", "log p drop without the words; higher: more necessary"),
                          ("sufficiency", "log p drop with only the words; lower: more sufficient")):
        fig = faith.get(name)
        if not isinstance(fig, Mapping):
            continue
        cells = [NONE if (v := _number(fig.get(k))) is None else f"{v:.3f}" for k in ("saliency", "random")]
        body.append(f"<tr><th>{name} <span class='muted'>({meaning})</span></th><td>{cells[0]}</td>"
                    f"<td>{cells[1]}</td><td>{format_difference(fig.get('difference')) or NONE}</td>"
                    f"<td>{share(fig.get('saliency_beats_random'))}</td></tr>")
    if not body:
        return ""
    n = f" (n = {esc(faith['n'])})" if faith.get("n") is not None else ""
    head = (f"<tr><th>faithfulness{n}</th><th>saliency rationale</th><th>random words</th>"
            "<th>difference (95% CI)</th><th>rationale better</th></tr>")
    return f'<table class="faithfulness">{head}{"".join(body)}</table>'


def analysis_pages(report_folder: str | Path) -> list[tuple[str, str]]:
    """``(split, href)`` of each heatmap page ``analyze`` wrote beside the report folder, href
    relative (``../analysis/train.html``) so the link works wherever the run folder is copied."""
    folder = Path(report_folder).parent / ANALYSIS_FOLDER
    pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
    return [(p.stem, f"../{ANALYSIS_FOLDER}/{urllib.parse.quote(p.name)}") for p in pages if p.is_file()]


def analysis_section(analysis: Mapping[str, Any] | None, pages: Sequence[tuple[str, str]]) -> str:
    """The figures (and faithfulness, when the summary has it) and the links to the heatmaps."""
    parts = []
    if analysis:
        parts.append(_rows(analysis_figures(analysis), "facts") if analysis_figures(analysis)
                     else '<p class="muted">(no analysis figures)</p>')
        if isinstance(analysis.get("faithfulness"), Mapping):
            parts.append(faithfulness_table(analysis["faithfulness"]))
    if pages:
        links = "".join(f'<li><a class="heatmap" href="{esc(href)}">{esc(split)}</a></li>' for split, href in pages)
        parts.append(f"<p>Saliency heatmaps, example by example:</p><ul>{links}</ul>")
    return "".join(parts) or '<p class="muted">No rationale analysis in this run.</p>'


def environment_table(environment: Mapping[str, Any]) -> str:
    """Versions and machine, nested mappings (``packages``) flattened to dotted keys."""
    pairs: list[tuple[str, str]] = []
    for key, value in environment.items():
        if isinstance(value, Mapping):
            pairs += [(f"{key}.{k}", esc(v)) for k, v in value.items()]
        else:
            pairs.append((str(key), esc(value)))
    return _rows(pairs, "facts") if pairs else '<p class="muted">No environment recorded.</p>'
