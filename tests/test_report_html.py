"""report.html: the table and its intervals, escaping, no remote references, heatmap links only
when the pages exist, the optional sections, the data-efficiency hook; and, when a Chromium
binary is installed, the page rendered in a real headless browser by scripts/check_report_html.py
(which must also fail on a broken page)."""

from __future__ import annotations

import html
import importlib.util
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from saliency_distill.errors import DataError
from saliency_distill.reporting import write_report
from saliency_distill.reporting.efficiency import check_curve, curve_from_records

SCRIPT = Path(__file__).parents[1] / "scripts" / "check_report_html.py"
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>'
IDS = [f"q{i}" for i in range(40)]


def correct_for(right: int, seed: int) -> dict[str, bool]:
    """``right`` of the 40 examples correct, which ones moving with the seed."""
    return {q: (i + 7 * seed) % len(IDS) < right for i, q in enumerate(IDS)}


def make_report(folder: Path, modes: tuple[str, ...] = ("standard", "saliency", "llm-rationale"), **kw: Any) -> str:
    """A report of ``modes`` x 3 seeds with per-example answers; returns the page's text."""
    records, correctness = [], {}
    for k, mode in enumerate(modes):
        for seed in range(3):
            answers = correct_for(24 + 4 * k + seed, seed)
            correctness.setdefault(mode, {})[seed] = answers
            records.append({"mode": mode, "seed": seed, "accuracy": sum(answers.values()) / len(IDS),
                            "ranked_accuracy": None, "n": len(IDS), "train_seconds": 10.0 + k})
    args: dict[str, Any] = {"config": {"task": {"name": "cqa"}}, "teacher": None, "analysis": None,
                            "environment": {"python": "3.11", "packages": {"torch": "2.13.0"}}, "title": "Tiny"}
    write_report(folder, kw.pop("records", records), correctness=correctness, **{**args, **kw})
    return (folder / "report.html").read_text(encoding="utf-8")


def table_rows(page: str) -> list[list[str]]:
    """Cell texts of the results table's body rows."""
    body = re.search(r'<table id="results-table".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_table_has_a_row_per_mode_and_the_paired_intervals(tmp_path):
    page = make_report(tmp_path / "report")
    significance = json.loads((tmp_path / "report" / "significance.json").read_text())
    rows = {r[0]: r for r in table_rows(page)}
    assert list(rows) == ["standard", "saliency", "llm-rationale"]
    assert "vs standard<br>points [95% CI]" in page and "vs llm-rationale<br>points [95% CI]" in page
    for entry in significance:
        col = {"standard": 4, "llm-rationale": 5}[entry["baseline"]]  # no ranked-choice column: none has one
        want = f"{entry['difference']:+.2f} [{entry['lower']:.2f}, {entry['upper']:.2f}]"
        assert rows[entry["mode"]][col] == want
    assert rows["standard"][4] == "baseline" and rows["llm-rationale"][5] == "baseline"
    assert rows["standard"][5] == "–"  # standard is not compared with the later baseline
    assert rows["saliency"][1] == "3" and " ± " in rows["saliency"][2]
    assert '<tr class=best><td>llm-rationale</td>' in page  # the highest mean is bold


def test_without_a_baseline_there_are_no_interval_columns(tmp_path):
    page = make_report(tmp_path / "report", modes=("saliency", "teacher-label"))
    assert "vs standard" not in page and all(len(r) == 4 for r in table_rows(page))


def test_hostile_strings_are_escaped(tmp_path):
    teacher = {"model": HOSTILE, "accuracy": 0.5, "quality": {"test": {
        "accuracy": 0.5, "n": 4, "answer_distribution": {HOSTILE: 4}, "gold_distribution": {"a": 4}}}}
    analysis = {"store": {"teacher": HOSTILE}, "faithfulness": {"n": HOSTILE, "sufficiency": {"saliency": 1.0}}}
    page = make_report(tmp_path / "report", modes=("standard", HOSTILE), title=f"title {HOSTILE}",
                       teacher=teacher, analysis=analysis, config={"note": f"</pre>{HOSTILE}"},
                       environment={"python": HOSTILE})
    assert "<script" not in page.lower()
    assert page.count(html.escape(HOSTILE)) >= 6  # title, table, teacher, distribution, store, config...
    assert [r[0] for r in table_rows(page)] == ["standard", HOSTILE]
    svg = re.search(r'<figure id="accuracy-plot">(<svg.*?</svg>)', page, re.S).group(1)
    assert len([el for el in ET.fromstring(svg).iter(f"{SVG}rect") if el.get("class") == "bar"]) == 2


def test_page_references_nothing_remote(tmp_path):
    page = make_report(tmp_path / "report", curve=[{"fraction": f, "mode": "standard", "mean": 50.0 + 10 * f}
                                                   for f in (0.5, 1.0)])
    refs = re.findall(r"""\b(?:src|href|action|poster|data)\s*=\s*["']?([^"'\s>]+)""", page, re.I)
    assert refs and not [r for r in refs if re.match(r"(?:[a-z]+:)?//", r, re.I)]
    assert not re.search(r"url\(|@import|<link\b|<script\b|<iframe\b|<img\b", page, re.I)
    assert "<style>" in page and "<svg" in page


def test_heatmap_links_only_for_pages_that_exist(tmp_path):
    page = make_report(tmp_path / "run" / "report")
    assert "../analysis/" not in page and 'class="heatmap"' not in page
    analysis = tmp_path / "run" / "analysis"
    analysis.mkdir()
    for name in ("train.html", "test.html", "train.json"):
        (analysis / name).write_text("x")
    page = make_report(tmp_path / "run" / "report")
    hrefs = re.findall(r'<a class="heatmap" href="([^"]+)">', page)
    assert hrefs == ["../analysis/test.html", "../analysis/train.html"]
    assert all((tmp_path / "run" / "report" / h).resolve().is_file() for h in hrefs)


def test_teacher_and_analysis_sections_show_what_is_there(tmp_path):
    teacher = {"model": "qwen", "finetuned": False, "accuracy": 0.725, "quality": {"train": {
        "accuracy": 0.65, "n": 800, "ci95": [0.6163, 0.6823], "majority_share": 0.34375,
        "answer_distribution": {"contradiction": 352, "entailment": 418, "neutral": 30},
        "gold_distribution": {"contradiction": 261, "entailment": 264, "neutral": 275}}}}
    faith = {"n": 200, "comprehensiveness": {"saliency": 1.482, "random": 0.611,
                                             "saliency_beats_random": {"n": 200, "percent": 71.5},
                                             "difference": {"mean": 0.871, "lower": 0.5, "upper": 1.2}}}
    analysis = {"n_rows": 272, "gold_containment": {"multiple_choice": {"n": 300, "percent": 62.3}},
                "mean_rationale_words": 5.0, "faithfulness": faith}
    page = make_report(tmp_path / "report", teacher=teacher, analysis=analysis)
    assert "Teacher test accuracy: 72.50%" in page
    assert "Accuracy 65.00% (95% Wilson interval 61.6&ndash;68.2%), n = 800." in page
    assert "<th>neutral</th>" in page and " 30 <span class=\"muted\">(3.8%)</span>" in page
    assert "62.30% (n = 300) of multiple-choice rows" in page and "5.0 words" in page
    assert 'class="faithfulness"' in page and "<td>1.482</td><td>0.611</td><td>+0.871 [+0.500, +1.200]</td><td>71.50% (n = 200)</td>" in page
    bare = make_report(tmp_path / "bare", analysis={"n_rows": 3})
    assert "No teacher metrics in this run." in bare and 'class="faithfulness"' not in bare
    assert "<th>rows analysed</th><td>3</td>" in bare
    assert 'class="yaml">task:\n  name: cqa\n</pre>' in bare and "<th>packages.torch</th><td>2.13.0</td>" in bare


def test_data_efficiency_curve_from_argument_file_or_records(tmp_path):
    assert 'id="data-efficiency"' not in make_report(tmp_path / "none")
    points = [{"fraction": f, "mode": m, "mean": 50.0 + 20 * f + k, "lower": 45.0 + 20 * f, "upper": 60.0 + 20 * f}
              for k, m in enumerate(("saliency", "standard")) for f in (0.1, 0.5, 1.0)]
    page = make_report(tmp_path / "arg", curve=points)
    svg = re.search(r'<figure id="curve-plot">(<svg.*?</svg>)', page, re.S).group(1)
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}polyline")) == 2 and len(root.findall(f"{SVG}polygon")) == 2
    # lines follow the table's mode order, so each has its bar's colour
    assert [el.findtext(f"{SVG}title") for el in root.findall(f"{SVG}polyline")] == ["standard", "saliency"]
    assert "the interval given with each point" in page and '<a href="#data-efficiency">' in page

    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "curve.json").write_text(json.dumps({"points": points}))
    assert "From curve.json (saliency-distill curve)" in make_report(tmp_path / "file")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "curve.json").write_text("{not json")
    assert 'id="data-efficiency"' not in make_report(tmp_path / "broken")  # logged, report still written

    records = [{"mode": "standard", "seed": s, "fraction": f, "accuracy": 0.5 + 0.2 * f + 0.01 * s}
               for f in (0.25, 1.0) for s in range(3)]
    derived = curve_from_records(records)
    assert [(p["fraction"], round(p["mean"], 6), p["seeds"]) for p in derived] == [(0.25, 56.0, 3), (1.0, 71.0, 3)]
    assert derived[0]["lower"] == pytest.approx(55.0) and derived[0]["upper"] == pytest.approx(57.0)
    assert "± 1 std over seeds" in make_report(tmp_path / "rec", records=records)
    assert curve_from_records([{**r, "fraction": 1.0} for r in records]) is None  # one fraction: no curve


@pytest.mark.parametrize("bad, message", [({"fraction": 0, "mode": "m", "mean": 1.0}, "must be in"),
                                          ({"fraction": 0.5, "mean": 1.0}, "needs a 'mode'"),
                                          ({"fraction": 0.5, "mode": "m", "mean": "x"}, "finite number"),
                                          ({"fraction": 0.5, "mode": "m", "mean": 5.0, "lower": 6.0}, "does not hold")])
def test_bad_curve_points_are_named(bad, message):
    with pytest.raises(DataError, match=message):
        check_curve([bad])
    with pytest.raises(DataError, match="a second point"):
        check_curve([{"fraction": 0.5, "mode": "m", "mean": 1.0}] * 2)


# ---- in a real browser ----

def _chromium() -> str | None:
    spec = importlib.util.spec_from_file_location("check_report_html", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module.find_chromium()


def _check(page: Path, shot: Path) -> subprocess.CompletedProcess:
    if _chromium() is None:
        pytest.skip("no Chromium binary (chromium, chromium-browser, google-chrome or $CHROMIUM): "
                    "apt-get install chromium to render report.html in a real browser")
    return subprocess.run([sys.executable, str(SCRIPT), str(page), "--screenshot", str(shot), "--width", "1000",
                           "--height", "1400"], capture_output=True, text=True, timeout=300)


def test_report_renders_in_headless_chromium(tmp_path):
    make_report(tmp_path / "run" / "report", teacher={"model": "t", "accuracy": 0.6},
                curve=[{"fraction": f, "mode": "standard", "mean": 60.0 * f} for f in (0.5, 1.0)])
    shot = tmp_path / "shot.png"
    done = _check(tmp_path / "run" / "report" / "report.html", shot)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    results table in the rendered DOM: 3 row(s)" in done.stdout
    assert "ok    accuracy plot in the rendered DOM: inline SVG with 3 bar(s)" in done.stdout
    assert "ok    console: no messages" in done.stdout and "all checks passed" in done.stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_browser_check_fails_on_a_broken_page(tmp_path):
    page = make_report(tmp_path / "report")
    broken = tmp_path / "report" / "broken.html"
    broken.write_text(page.replace("</head>", '<link rel="stylesheet" href="https://cdn.example.invalid/a.css">'
                                              "</head>", 1)
                      .replace("</body>", "<script>notDefined();</script></body>", 1)
                      .replace('id="results-table"', 'id="something-else"', 1))
    done = _check(broken, tmp_path / "broken.png")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "FAIL  results table (#results-table) missing" in out
    assert "FAIL  console messages:" in out and "Uncaught ReferenceError: notDefined is not defined" in out
    assert "FAIL  external resources:" in out and "https://cdn.example.invalid/a.css" in out
    assert "check(s) failed" in out
