"""Per-mode aggregation of result records, and the Markdown / CSV tables built from it.

A result record is one (mode, seed) run, e.g.
``{"mode": "saliency", "seed": 0, "accuracy": 0.61, "ranked_accuracy": 0.64, "n": 1221,
"train_seconds": 812.3, "train_examples_per_s": 3.9}``. Accuracies are fractions in [0, 1];
the tables show them in percent. Modes keep the order in which they first appear.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import DataError
from ..io import atomic_open

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("accuracy", "ranked_accuracy")
# Averaged without a spread: they describe cost, not quality.
TIMING_FIELDS = ("train_seconds", "train_examples_per_s")
# Averaged without a spread too: what a choice between modes may look at (not the test split).
SELECTION_FIELDS = ("validation_accuracy",)
MISSING = "n/a"


def _number(record: Mapping[str, Any], key: str) -> float | None:
    """``record[key]`` as a float, None when absent or None; anything else non-numeric is an error."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise DataError(f"result record {record.get('mode')!r} seed {record.get('seed')!r}: "
                        f"'{key}' must be a number, got {value!r}")
    return float(value)


def group_by_mode(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by ``mode``, modes in order of first appearance."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for i, record in enumerate(records):
        mode = record.get("mode")
        if not isinstance(mode, str) or not mode:
            raise DataError(f"result record #{i} has no 'mode' (got {mode!r})")
        groups.setdefault(mode, []).append(record)
    return groups


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1); std is None for one value (there is no spread
    to show), both None for none."""
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def _values(records: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [v for v in (_number(r, key) for r in records) if v is not None]


def aggregate(records: list[dict], metrics: Sequence[str] = DEFAULT_METRICS) -> list[dict]:
    """One row per mode: ``mode``, ``n_seeds``, ``<metric>_mean`` / ``<metric>_std`` for each
    metric (None values skipped; None when a mode has none) and ``<timing>_mean`` of the
    training time fields."""
    rows = []
    for mode, group in group_by_mode(records).items():
        row: dict[str, Any] = {"mode": mode, "n_seeds": len(group)}
        for metric in metrics:
            row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std(_values(group, metric))
        for timing in (*TIMING_FIELDS, *SELECTION_FIELDS):
            row[f"{timing}_mean"] = _mean_std(_values(group, timing))[0]
        rows.append(row)
    logger.debug("aggregated %d records into %d modes", len(records), len(rows))
    return rows


def percent_cell(mean: float | None, std: float | None) -> str:
    """``"61.23 ± 0.45"`` from fractions; ``"n/a"`` without a mean."""
    if mean is None:
        return MISSING
    if std is None:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _md_escape(text: str) -> str:
    # A '|' inside a cell would start a new column.
    return text.replace("|", "\\|")


def best_modes(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> set[str]:
    """Modes with the highest mean ``metric`` (all of them on a tie; none without a mean)."""
    means = {r["mode"]: r.get(f"{metric}_mean") for r in rows}
    known = [m for m in means.values() if m is not None]
    if not known:
        return set()
    top = max(known)
    return {mode for mode, m in means.items() if m is not None and math.isclose(m, top)}


def _seconds_cell(seconds: float | None) -> str:
    return MISSING if seconds is None else f"{seconds:.1f}"


def has_ranked(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether any row has a ranked-choice accuracy (its column is left out where none has)."""
    return any(row.get("ranked_accuracy_mean") is not None for row in rows)


def _markdown_row(row: Mapping[str, Any], bold: bool, ranked: bool = True) -> str:
    mode = _md_escape(str(row["mode"]))
    accuracy = percent_cell(row.get("accuracy_mean"), row.get("accuracy_std"))
    if bold:
        mode, accuracy = f"**{mode}**", f"**{accuracy}**"
    cells = [mode, str(row.get("n_seeds", MISSING)), accuracy]
    if ranked:
        cells.append(percent_cell(row.get("ranked_accuracy_mean"), row.get("ranked_accuracy_std")))
    cells.append(_seconds_cell(row.get("train_seconds_mean")))
    return "| " + " | ".join(cells) + " |"


def reference_levels(examples: Sequence[Any]) -> dict[str, float]:
    """What a student that learned nothing scores on ``examples`` (a choice task's test split):
    ``chance`` (a uniform guess among each example's options) and ``majority`` (always the most
    frequent gold label of a label set, or the most frequent gold option position); empty for
    free-form tasks."""
    if not examples or any(not ex.choices or ex.label is None for ex in examples):
        return {}
    chance = sum(1 / len(ex.choices) for ex in examples) / len(examples)
    shared = len({ex.choices for ex in examples}) == 1
    keys = [ex.label if shared else ex.choices.index(ex.label) if ex.label in ex.choices else None for ex in examples]
    top = max((keys.count(k) for k in set(keys) if k is not None), default=0)
    return {"chance": chance, "majority": top / len(examples)}


def teacher_line(teacher: Mapping[str, Any]) -> str:
    """``Teacher (`model`) test accuracy: 70.00 %``, with the number of examples when known, and
    the chance and majority-class levels of the test split when given."""
    model = teacher.get("model")
    who = f"Teacher (`{model}`)" if model else "Teacher"
    accuracy = teacher.get("accuracy")
    value = MISSING if accuracy is None else f"{100 * float(accuracy):.2f} %"
    n = teacher.get("n")
    levels = levels_text(teacher)
    line = f"{who} test accuracy: {value}" + (f" (n = {n})" if n is not None else "") if "model" in teacher else ""
    return "; ".join(p for p in (line, levels) if p) + ("." if levels else "")


def levels_text(levels: Mapping[str, Any]) -> str:
    """``chance 33.33 %, majority class 35.20 %`` (a student near them learned nothing), or ""."""
    if levels.get("chance") is None:
        return ""
    return (f"chance {100 * levels['chance']:.2f} %, majority class {100 * levels['majority']:.2f} % "
            "(a student near these learned nothing)")


def markdown_table(rows: Sequence[Mapping[str, Any]], teacher: dict | None = None, title: str | None = None) -> str:
    """A Markdown table of aggregated rows (from :func:`aggregate`), the best mean accuracy in
    bold, with an optional ``### title`` above and the teacher's accuracy below."""
    best, ranked = best_modes(rows), has_ranked(rows)
    lines = [f"### {title}", ""] if title else []
    column = " ranked-choice accuracy (%) |" if ranked else ""
    lines += [f"| mode | seeds | accuracy (%) mean ± std |{column} train s |",
              "|---|---:|---:|" + ("---:|" if ranked else "") + "---:|"]
    lines += [_markdown_row(row, row["mode"] in best, ranked) for row in rows]
    if teacher is not None:
        lines += ["", teacher_line(teacher)]
    return "\n".join(lines) + "\n"


def _fieldnames(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """One line per mode with every aggregated field; None is written as an empty cell."""
    fieldnames = _fieldnames(rows)
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fieldnames})
    logger.debug("wrote %d rows to %s", len(rows), path)
