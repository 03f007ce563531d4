"""The report folder of an experiment: results table, plot, raw records, config and environment.

``write_report`` writes, each file atomically:

- ``results.md``: title, the per-mode table, the teacher's accuracy, the significance of each
  mode's difference from the baselines, the rationale analysis, the environment and the resolved
  config as a YAML block;
- ``results.csv``: the aggregated table; ``accuracy.svg``: the bar chart;
- ``records.json``: the raw result records; ``significance.json``: the paired bootstrap of each
  comparison (see :mod:`.significance`); ``config.yaml``; ``environment.json``;
- ``report.html``: all of it on one self-contained page (see :mod:`.page`).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ..config import to_dict
from ..errors import DataError
from ..evaluation.evaluate import PREDICTIONS_FILE
from ..io import atomic_open, write_json
from ..run_dir import RunDir
from .efficiency import find_curve
from .page import PAGE_FILE, render_page
from .plot import accuracy_svg, write_svg
from .sections import analysis_pages
from .significance import Correctness, compare_modes, headline, significance_lines
from .table import aggregate, markdown_table, write_csv

logger = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "accelerate", "peft", "datasets", "tokenizers", "safetensors")
NOT_INSTALLED = "not installed"
FILES = ("results.md", "results.csv", "accuracy.svg", "records.json", "significance.json", "config.yaml",
         "environment.json", PAGE_FILE)


def package_version(name: str) -> str:
    """Installed version of distribution ``name``, or ``"not installed"``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED


def environment_info() -> dict[str, Any]:
    """Interpreter, machine and library versions, and the date, as a JSON-able dict."""
    from .._version import __version__

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "saliency_distill": __version__,
        "packages": {name: package_version(name) for name in LIBRARIES},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _fmt_percent(entry: Any) -> str | None:
    """``"62.30 % of 300"`` from ``{"n": 300, "percent": 62.3}``; None when there is no number."""
    if not isinstance(entry, Mapping) or entry.get("percent") is None:
        return None
    n = entry.get("n")
    return f"{float(entry['percent']):.2f} %" + (f" of {n}" if n is not None else "")


def _containment_line(label: str, section: Any) -> str | None:
    if not isinstance(section, Mapping):
        return None
    parts = [f"{text} ({name.replace('_', '-')})" for name in ("multiple_choice", "all")
             if (text := _fmt_percent(section.get(name))) is not None]
    return f"- {label}: " + "; ".join(parts) if parts else None


def _human_line(section: Any) -> str | None:
    if not isinstance(section, Mapping):
        return None
    scores = [f"{name} {float(section[key]):.3f}" for key, name in
              (("precision", "precision"), ("recall", "recall"), ("f1", "F1")) if section.get(key) is not None]
    if not scores:
        return None
    n = section.get("n")
    return "- Rationale words vs human rationale" + (f" (n = {n})" if n is not None else "") + ": " + ", ".join(scores)


def analysis_lines(analysis: Mapping[str, Any]) -> list[str]:
    """Bullet lines of the rationale analysis figures that are present (missing keys skipped)."""
    lines = [
        _containment_line("Gold answer contained in the rationale", analysis.get("gold_containment")),
        _containment_line("Teacher answer contained in the rationale", analysis.get("teacher_containment")),
        _human_line(analysis.get("human_rationale")),
    ]
    if (accuracy := _fmt_percent(analysis.get("teacher_accuracy"))) is not None:
        lines.append(f"- Teacher accuracy on the rationale rows: {accuracy}")
    if analysis.get("mean_rationale_words") is not None:
        lines.append(f"- Mean rationale length: {float(analysis['mean_rationale_words']):.1f} words")
    return [line for line in lines if line is not None]


def environment_lines(environment: Mapping[str, Any]) -> list[str]:
    """Bullet lines of the environment, nested mappings one level deeper."""
    lines = []
    for key, value in environment.items():
        if isinstance(value, Mapping):
            lines.append(f"- {key}:")
            lines += [f"  - {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"- {key}: {value}")
    return lines


def settings_line(config: Mapping[str, Any], tune: Mapping[str, Any] | None) -> str:
    """Where the attribution method, target, k and alpha came from: ``tune`` (``tune.json``) when
    it chose exactly these, else the config (said plainly, so an untuned run is not read as tuned)."""
    attribution, rationale = config.get("attribution") or {}, config.get("rationale") or {}
    student = config.get("student") or {}
    by_mode = student.get("alpha_by_mode") or {}
    alpha = by_mode.get("saliency", student.get("alpha"))
    used = (attribution.get("method"), attribution.get("target"), rationale.get("k"), alpha)
    text = f"attribution {used[0]}, target {used[1]}, k={used[2]}, alpha={used[3]}"
    others = {m: a for m, a in by_mode.items() if m != "saliency"}
    if others:
        text += f" (other modes: {', '.join(f'{m} {a:g}' for m, a in others.items())}; the rest {student.get('alpha')})"
    chosen = (tune or {}).get("chosen")
    if chosen and (chosen["method"], chosen["target"], chosen["k"], chosen["alpha"]) == used:
        timing = tune.get("timing") or {}  # type: ignore[union-attr]
        return (f"Settings: {text}, chosen on the validation split by `saliency-distill tune` ([tune.md](tune.md): "
                f"{len(tune['faithfulness'])} candidates by faithfulness, {len(tune['students'])} budget students; "  # type: ignore[index]
                f"{sum(timing.values()):.0f} s).")
    return f"Settings: {text}, as set in the config (not tuned; `saliency-distill tune` chooses them on validation)."


def results_markdown(title: str, rows: list[dict], *, config: Mapping[str, Any], teacher: dict | None,
                     analysis: Mapping[str, Any] | None, environment: Mapping[str, Any],
                     significance: list[dict] | None = None, tune: Mapping[str, Any] | None = None,
                     rationales: bool = True) -> str:
    """Text of ``results.md``; ``significance`` are :func:`.significance.compare_modes` entries
    (no section without any), ``tune`` the search of ``tune.json`` if there is one; without
    ``rationales`` (no mode explains) no line on the attribution settings."""
    parts = [f"# {title}", "", "## Results", "", markdown_table(rows, teacher=teacher).rstrip("\n"), ""]
    sentence = headline(significance or [], rows)
    parts += [f"**{sentence}**", ""] if sentence else []
    parts += [settings_line(config, tune), ""] if rationales else []
    parts += ["![accuracy per mode](accuracy.svg)", ""]
    if significance:
        parts += ["## Significance", "", *significance_lines(significance), ""]
    if analysis:
        lines = analysis_lines(analysis) or ["(no analysis figures)"]
        parts += ["## Analysis", "", *lines, ""]
    parts += ["## Environment", "", *environment_lines(environment), ""]
    parts += ["## Config", "", "```yaml", _yaml(config).rstrip("\n"), "```", ""]
    return "\n".join(parts)


def _tune(folder: Path) -> dict[str, Any] | None:
    path = folder / "tune.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except ValueError:
        logger.warning("%s: unreadable, left out of the report", path)
        return None


def _yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True, default_flow_style=False)


def _write_text(path: Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def read_correctness(run_dir: str | os.PathLike[str], records: list[dict]) -> dict[str, dict[int, dict[str, bool]]]:
    """``{mode: {seed: {example id: correct}}}`` from each record's ``predictions.jsonl`` in
    ``run_dir`` (the greedy answer's ``correct``, the one ``accuracy`` counts). A run without the
    file (made before predictions were kept, or by another process) is left out, so its mode gets
    no interval rather than a wrong one."""
    out: dict[str, dict[int, dict[str, bool]]] = {}
    for record in records:
        mode, seed = record.get("mode"), record.get("seed")
        if not isinstance(mode, str) or isinstance(seed, bool) or not isinstance(seed, int):
            continue  # no run folder to look in; aggregate() reports a record without a mode
        path = RunDir(run_dir).student(mode, seed) / PREDICTIONS_FILE
        if not path.is_file():
            logger.debug("no per-example predictions for %s seed %s (%s)", mode, seed, path)
            continue
        answers: dict[str, bool] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                answers[str(row["id"])] = bool(row["correct"])
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{number}: a prediction row needs 'id' and 'correct' ({e})") from None
        out.setdefault(mode, {})[seed] = answers
    return out


def write_report(folder: Path, records: list[dict], *, config: dict, teacher: dict | None,
                 analysis: dict | None, environment: dict, title: str,
                 correctness: Mapping[str, Correctness] | None = None,
                 curve: Sequence[Mapping[str, Any]] | None = None, rationales: bool = True) -> Path:
    """Write the report files (see the module docstring) into ``folder`` and return it.

    ``correctness`` (from :func:`read_correctness`) gives each mode's per-example answers for the
    paired bootstrap; a mode without them is listed with no interval. ``curve``: data-efficiency
    points for ``report.html`` (shape: :mod:`.efficiency`); without it the page draws the
    ``curve.json`` of ``folder`` or a curve from records with a ``fraction``, if any.
    ``rationales``: some mode explains (``results.md`` says where its attribution settings came from).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not records:
        logger.warning("writing a report with no result records to %s", folder)
    rows = aggregate(records)
    teacher_accuracy = (teacher or {}).get("accuracy")
    significance = compare_modes(correctness or {}, [row["mode"] for row in rows])
    write_json(folder / "records.json", records)
    write_json(folder / "significance.json", significance)
    write_csv(folder / "results.csv", rows)
    svg = accuracy_svg(rows, title, teacher_accuracy, teacher)
    write_svg(folder / "accuracy.svg", svg)
    _write_text(folder / "config.yaml", _yaml(config))
    write_json(folder / "environment.json", environment)
    _write_text(folder / "results.md", results_markdown(title, rows, config=config, teacher=teacher,
                                                        analysis=analysis, environment=environment,
                                                        significance=significance, tune=_tune(folder),
                                                        rationales=rationales))
    points, caption = find_curve(curve, records, folder)
    _write_text(folder / PAGE_FILE, render_page(
        title, rows, svg=svg, significance=significance, teacher=teacher, analysis=analysis, environment=environment,
        config_yaml=_yaml(config), curve=points, curve_caption=caption, heatmaps=analysis_pages(folder)))
    logger.debug("report for %d modes written to %s", len(rows), folder)
    return folder
