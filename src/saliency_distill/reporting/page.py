"""``report.html``: the whole report on one page that opens from disk (file://) in any browser.

Someone reading a run should not need a server, a network or a Markdown viewer, and the page
must still look the same in a year, so it is self-contained: inline CSS, the plots as inline
SVG, no scripts, no fonts or stylesheets from elsewhere, and the only links are relative ones to
the heatmap pages of the same run folder. Every string from the data is escaped.

Sections, top to bottom: the results table (mean ± std per mode, and each mode's paired 95%
bootstrap interval against ``standard`` and ``llm-rationale`` when they ran), the accuracy bar
chart, the data-efficiency curve (only when there is one, see :mod:`.efficiency`), the
teacher's accuracy and answer distribution, the rationale analysis (faithfulness when present)
with links to ``../analysis/<split>.html``, the config (YAML) and the environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .efficiency import check_curve
from .plot import curve_svg
from .sections import NONE, analysis_section, environment_table, esc, teacher_section
from .significance import DEFAULT_BASELINES, headline, significance_sentence
from .table import best_modes, has_ranked, percent_cell

PAGE_FILE = "report.html"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       background: #fff; max-width: 1100px; margin: 1.5em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.45em; margin: 0 0 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
nav a { margin-right: 0.9em; }
a { color: #1f5fa8; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #d4d4d4; padding: 0.28em 0.7em; text-align: left; vertical-align: top; }
thead th, table.distribution tr:first-child th, table.faithfulness tr:first-child th { background: #f2f2f2; }
table.results td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.results tr.best td:first-child, table.results tr.best td.acc { font-weight: 700; }
td.sig { background: #e6f4ea; }
table.facts th { font-weight: 600; background: #fafafa; }
.muted { color: #777; }
.note { color: #555; font-size: 0.9em; }
.warning { color: #a61b1b; font-weight: 600; }
span.bar { display: inline-block; height: 0.7em; border-radius: 2px; vertical-align: middle; }
span.bar.teacher { background: #4e79a7; }
span.bar.gold { background: #b0b0b0; }
figure { margin: 0.6em 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; border: 1px solid #e2e2e2; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
footer { margin: 2.5em 0 1em; color: #888; font-size: 0.85em; }
"""


def _baselines(significance: Sequence[Mapping[str, Any]]) -> list[str]:
    """The baselines that have a column: those some comparison was made against."""
    used = {e.get("baseline") for e in significance}
    return [b for b in DEFAULT_BASELINES if b in used]


def _interval_cell(mode: str, baseline: str, entry: Mapping[str, Any] | None) -> str:
    """``+2.13 [0.41, 3.90]`` in points, shaded when the interval excludes 0, the sentence of
    :func:`.significance.significance_sentence` as its tooltip."""
    if mode == baseline:
        return '<td class="num muted">baseline</td>'
    if entry is None:
        return f'<td class="num muted">{NONE}</td>'
    tip = esc(significance_sentence(entry))
    if entry.get("difference") is None:
        return f'<td class="num muted" title="{tip}">no interval</td>'
    cls = "num sig" if entry.get("excludes_zero") else "num"
    return (f'<td class="{cls}" title="{tip}">{entry["difference"]:+.2f} '
            f'[{entry["lower"]:.2f}, {entry["upper"]:.2f}]</td>')


def results_table(rows: Sequence[Mapping[str, Any]], significance: Sequence[Mapping[str, Any]]) -> str:
    """One row per mode of :func:`.table.aggregate` rows, the best mean accuracy in bold, and a
    column per baseline with the paired interval of :func:`.significance.compare_modes`."""
    baselines = _baselines(significance)
    level = next((e["confidence"] for e in significance if e.get("difference") is not None), 0.95)
    entries = {(e.get("mode"), e.get("baseline")): e for e in significance}
    with_ranked = has_ranked(rows)
    head = ["mode", "seeds", "accuracy (%)<br>mean ± std",
            *(["ranked-choice (%)<br>mean ± std"] if with_ranked else []), "train s"]
    head += [f"vs {esc(b)}<br>points [{100 * level:g}% CI]" for b in baselines]
    best = best_modes(rows)
    body = []
    for row in rows:
        mode = str(row["mode"])
        seconds = row.get("train_seconds_mean")
        ranked = percent_cell(row.get("ranked_accuracy_mean"), row.get("ranked_accuracy_std"))
        cells = [f"<td>{esc(mode)}</td>", f'<td class="num">{esc(row.get("n_seeds", ""))}</td>',
                 f'<td class="num acc">{percent_cell(row.get("accuracy_mean"), row.get("accuracy_std"))}</td>',
                 *([f'<td class="num">{ranked}</td>'] if with_ranked else []),
                 f'<td class="num">{NONE if seconds is None else f"{seconds:.1f}"}</td>']
        cells += [_interval_cell(mode, b, entries.get((mode, b))) for b in baselines]
        body.append(f'<tr{" class=best" if mode in best else ""}>{"".join(cells)}</tr>')
    thead = "".join(f"<th>{h}</th>" for h in head)
    return (f'<table id="results-table" class="results"><thead><tr>{thead}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _significance_note(significance: Sequence[Mapping[str, Any]]) -> str:
    if not significance:
        return ""
    done = [e for e in significance if e.get("difference") is not None]
    how = ("Interval columns: accuracy of the mode minus the baseline's, in points, with a paired bootstrap "
           "interval over the test examples (each resampled example keeps all its seeds); shaded where it "
           "excludes 0.")
    if done:
        how += f" {done[0]['n_resamples']:,} resamples."
    items = "".join(f"<li>{esc(significance_sentence(e))}</li>" for e in significance)
    return (f'<p class="note">{how}</p><details><summary>Every comparison in words</summary>'
            f"<ul>{items}</ul></details>")


def _teacher_note(teacher: Mapping[str, Any] | None) -> str:
    """The teacher's test accuracy and the no-learning levels (chance, majority class)."""
    accuracy = (teacher or {}).get("accuracy")
    parts = []
    if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool):
        parts.append(f"Teacher test accuracy: {100 * accuracy:.2f}% (dashed line in the plot).")
    if (teacher or {}).get("chance") is not None:
        parts.append(f"Chance: {100 * teacher['chance']:.2f}%, majority class: {100 * teacher['majority']:.2f}% "  # type: ignore[index]
                     "(dotted lines): a student near them learned nothing.")
    return f'<p class="note">{" ".join(parts)}</p>' if parts else ""


def _byline(environment: Mapping[str, Any]) -> str:
    """When and by which version the page was written, from the environment."""
    parts = []
    if environment.get("date"):
        parts.append(f"written {esc(environment['date'])}")
    if environment.get("saliency_distill"):
        parts.append(f"by saliency-distill {esc(environment['saliency_distill'])}")
    return " ".join(parts)


def _curve_figure(curve: Sequence[Mapping[str, Any]] | None, caption: str, modes: Sequence[str]) -> str:
    """The data-efficiency figure, lines in the table's mode order (a line has its bar's colour)."""
    if not curve:
        return ""
    svg = curve_svg(check_curve(curve, modes), "Accuracy against the share of the train split")
    return (f'<section id="data-efficiency"><h2>Data efficiency</h2><figure id="curve-plot">{svg}'
            f"<figcaption>{esc(caption)}</figcaption></figure></section>")


def render_page(title: str, rows: Sequence[Mapping[str, Any]], *, svg: str,
                significance: Sequence[Mapping[str, Any]] = (), teacher: Mapping[str, Any] | None = None,
                analysis: Mapping[str, Any] | None = None, environment: Mapping[str, Any] | None = None,
                config_yaml: str = "", curve: Sequence[Mapping[str, Any]] | None = None, curve_caption: str = "",
                heatmaps: Sequence[tuple[str, str]] = ()) -> str:
    """The page's HTML. ``rows``: :func:`.table.aggregate`; ``svg``: :func:`.plot.accuracy_svg`;
    ``significance``: :func:`.significance.compare_modes`; ``teacher``: model, finetuned,
    accuracy and optionally quality (see :func:`.sections.teacher_section`); ``analysis``: the
    analyze summary; ``curve``: data-efficiency points (:mod:`.efficiency`; None or empty: no
    figure) and ``curve_caption`` what its bands are; ``heatmaps``: ``(split, relative href)``
    of the heatmap pages (:func:`.sections.analysis_pages`)."""
    environment = environment or {}
    curve_html = _curve_figure(curve, curve_caption, [str(r["mode"]) for r in rows])
    nav = [("results", "Results"), ("plot", "Plot"), ("teacher", "Teacher"), ("rationales", "Rationales"),
           ("config", "Config"), ("environment", "Environment")]
    if curve_html:
        nav.insert(2, ("data-efficiency", "Data efficiency"))
    made = _byline(environment)
    table = results_table(rows, significance) if rows else '<p class="warning">No result records.</p>'
    sentence = headline(significance, rows)
    table = (f'<p class="headline"><strong>{esc(sentence)}</strong></p>' if sentence else "") + table
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1>" + (f'<p class="muted">{made}</p>' if made else ""),
        "<nav>" + "".join(f'<a href="#{anchor}">{name}</a>' for anchor, name in nav) + "</nav></header>",
        f'<section id="results"><h2>Results</h2>{table}{_teacher_note(teacher)}'
        f"{_significance_note(significance)}</section>",
        f'<section id="plot"><h2>Accuracy per mode</h2><figure id="accuracy-plot">{svg}'
        "<figcaption>Mean test accuracy per mode; error bars: ± 1 std over seeds.</figcaption></figure></section>",
        curve_html,
        f'<section id="teacher"><h2>Teacher</h2>{teacher_section(teacher)}</section>',
        f'<section id="rationales"><h2>Rationales</h2>{analysis_section(analysis, heatmaps)}</section>',
        f'<section id="config"><h2>Config</h2><details><summary>The resolved config (config.yaml, '
        f'{len(config_yaml.splitlines())} lines)</summary><pre class="yaml">{esc(config_yaml)}</pre>'
        "</details></section>",
        f'<section id="environment"><h2>Environment</h2>{environment_table(environment)}</section>',
        "<footer>Written by saliency-distill's report stage; self-contained (no scripts, no external "
        "resources). The same numbers: results.md, results.csv, significance.json.</footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"

