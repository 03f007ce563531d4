"""The data-efficiency curve: accuracy against the share of the train split each mode gets.

The teacher answers and the rationales are computed once, on the full train split (the stages of
:mod:`saliency_distill.experiment` reuse them), and every fraction trains every mode and seed on a
*nested* subset: the examples of a smaller fraction are among those of every larger one, drawn
by one seeded shuffle, so a curve compares more data, not other data. The 100% point is the
run's own student stage (``<run_dir>/students``); the others live in
``<run_dir>/curve/<pct>/students``. Each point is the mean accuracy over seeds with a 95%
cluster-bootstrap interval over the test examples (each keeping all its seeds), and the paired
differences at the same share against the baselines of the main report (``standard``,
``llm-rationale``, ``random-words``: :func:`~saliency_distill.reporting.compare_modes`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import Example
from ..errors import ConfigError
from ..experiment import ExperimentConfig, prepare_stage, report_stage, student_stage
from ..io import atomic_open, write_json
from ..reporting import accuracy_interval, compare_modes, curve_svg, read_correctness, write_svg

logger = logging.getLogger(__name__)

FILES = ("curve.md", "curve.json", "curve.svg")
KEPT = ("difference", "lower", "upper", "excludes_zero")  # of each paired comparison, per point and baseline


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """Sorted distinct fractions in (0, 1]; anything else is a one-line error."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise ConfigError(f"curve fractions {list(fractions)}: each must be in (0, 1], at least one")
    return sorted(set(float(f) for f in fractions))


def nested_subsets(examples: Sequence[Example], fractions: Sequence[float], seed: int) -> dict[float, list[Example]]:
    """For each fraction, the first ceil(f * n) examples of one seeded shuffle (at least one), in
    the split's order: every subset holds every smaller one."""
    order = list(range(len(examples)))
    random.Random(f"curve:{seed}").shuffle(order)
    out = {}
    for f in check_fractions(fractions):
        chosen = set(order[: max(1, math.ceil(f * len(examples)))])
        out[f] = [ex for i, ex in enumerate(examples) if i in chosen]
    return out


def _label(fraction: float) -> str:
    """Folder name of a fraction: "p025" for 25%, "p0125" for 12.5%."""
    return "p" + f"{100 * fraction:g}".replace(".", "").zfill(3)


def run_curve(cfg: ExperimentConfig, fractions: Sequence[float], n_resamples: int = 2000, overwrite: bool = False,
              on_point: Callable[[float, list[dict[str, Any]]], None] | None = None) -> dict[str, Any]:
    """Train every mode x seed at every fraction (finished runs are reused) and write
    ``curve.md``, ``curve.json`` and ``curve.svg`` into ``<run_dir>/report``. Returns the JSON."""
    fractions = check_fractions(fractions)
    train = prepare_stage(cfg)["train"]
    subsets = nested_subsets(train, fractions, cfg.task.seed)
    records: list[dict[str, Any]] = []
    full: list[dict[str, Any]] = []
    for f in fractions:
        if f == 1.0:
            folder, recs = Path(cfg.run_dir), student_stage(cfg, overwrite)
            full = recs
        else:
            folder = Path(cfg.run_dir) / "curve" / _label(f)
            recs = student_stage(cfg, overwrite, train=subsets[f], folder=folder,
                                 identity={"train_fraction": f, "train_ids": [ex.id for ex in subsets[f]]})
        correctness = read_correctness(folder, recs)
        for rec in recs:
            rec = {**rec, "fraction": f, "train_examples": len(subsets[f])}
            records.append(rec)
        if on_point is not None:
            on_point(f, recs)
        logger.info("curve: %g%% of train (%d examples) done", 100 * f, len(subsets[f]))
        for mode, per_seed in correctness.items():
            records.append({"kind": "correctness", "fraction": f, "mode": mode,
                            "correct": {str(s): c for s, c in per_seed.items()}})
    points = curve_points(records, n_resamples)
    out = {"fractions": fractions, "train_examples": {str(f): len(subsets[f]) for f in fractions},
           "points": points, "records": [r for r in records if r.get("kind") != "correctness"]}
    report = Path(cfg.run_dir) / "report"
    write_json(report / "curve.json", out)
    with atomic_open(report / "curve.md") as fh:
        fh.write(curve_table(points, out["train_examples"], cfg.task.name))
    write_svg(report / "curve.svg", curve_svg(points, f"{cfg.task.name}: accuracy vs share of train data"))
    if full:  # the report (report.html) of the whole split, now with the curve in it
        report_stage(cfg, full)
    return out


def curve_points(records: Sequence[Mapping[str, Any]], n_resamples: int = 2000) -> list[dict[str, Any]]:
    """One point per (fraction, mode): ``fraction``, ``mode``, ``mean`` (accuracy in %, over the
    seeds' runs), ``lower`` / ``upper`` (the 95% cluster-bootstrap interval, None without
    per-example predictions), ``seeds``, and ``vs`` (baseline -> ``{"difference", "lower", "upper",
    "excludes_zero"}`` in points: the paired cluster bootstrap of this mode minus that baseline at the same fraction,
    for the pairs :func:`~saliency_distill.reporting.comparisons` makes and both modes' predictions
    allow); from result records (with ``fraction``) and ``{"kind": "correctness", "fraction",
    "mode", "correct": {seed: {id: bool}}}`` entries."""
    correct = {(r["fraction"], r["mode"]): r["correct"] for r in records if r.get("kind") == "correctness"}
    groups: dict[tuple[float, str], list[float]] = {}
    for r in records:
        if r.get("kind") != "correctness" and r.get("accuracy") is not None:
            groups.setdefault((r["fraction"], r["mode"]), []).append(100.0 * float(r["accuracy"]))
    points = []
    for (fraction, mode), accs in groups.items():
        point: dict[str, Any] = {"fraction": fraction, "mode": mode, "mean": sum(accs) / len(accs),
                                 "lower": None, "upper": None, "seeds": len(accs), "vs": {}}
        per_seed = correct.get((fraction, mode))
        if per_seed:
            interval = accuracy_interval(_by_seed(per_seed), n_resamples=n_resamples)
            point.update(lower=interval.lower, upper=interval.upper)
        points.append(point)
    for fraction in {p["fraction"] for p in points}:
        mine = {p["mode"]: p for p in points if p["fraction"] == fraction}
        answers = {m: _by_seed(c) for (f, m), c in correct.items() if f == fraction}
        for entry in compare_modes(answers, list(mine), n_resamples=n_resamples):
            if entry["difference"] is not None:
                mine[entry["mode"]]["vs"][entry["baseline"]] = {k: entry[k] for k in KEPT}
    return sorted(points, key=lambda p: (p["fraction"], p["mode"]))


def _by_seed(correct: Mapping[str, Mapping[str, bool]]) -> dict[int, Mapping[str, bool]]:
    return {int(s): c for s, c in correct.items()}


def curve_table(points: Sequence[Mapping[str, Any]], train_examples: Mapping[str, int], task: str) -> str:
    """Markdown: one row per fraction, one column per mode, "mean [lower, upper]" in %; then, per
    baseline in the points' ``vs``, a table of each mode's paired difference from it (* where its
    interval excludes 0)."""
    modes = list(dict.fromkeys(p["mode"] for p in points))
    fractions = sorted({p["fraction"] for p in points})
    cell = {(p["fraction"], p["mode"]): p for p in points}
    lines = [f"# Data-efficiency curve: {task}", "",
             "Test accuracy (%) by share of the train split: mean over seeds [95% cluster-bootstrap interval over "
             "the test examples]. Smaller shares are nested subsets of larger ones; the teacher and its "
             "rationales were computed once on the full split.", "",
             "| train share | examples | " + " | ".join(modes) + " |", "|---|---:|" + "---:|" * len(modes)]
    for f in fractions:
        cells = []
        for mode in modes:
            p = cell.get((f, mode))
            if p is None:
                cells.append("-")
            elif p["lower"] is None:
                cells.append(f"{p['mean']:.1f}")
            else:
                cells.append(f"{p['mean']:.1f} [{p['lower']:.1f}, {p['upper']:.1f}]")
        lines.append(f"| {100 * f:g}% | {train_examples.get(str(f), '')} | " + " | ".join(cells) + " |")
    def versus(f: float, mode: str, baseline: str) -> Mapping[str, Any] | None:
        return ((cell.get((f, mode)) or {}).get("vs") or {}).get(baseline)

    baselines = list(dict.fromkeys(b for p in points for b in p.get("vs") or {}))
    for baseline in baselines:
        rivals = [m for m in modes if any(versus(f, m, baseline) for f in fractions)]
        lines += ["", f"Each mode minus `{baseline}` at the same share, in points [paired 95% cluster-bootstrap "
                  "interval over the test examples and seeds; * where it excludes 0].", "",
                  "| train share | " + " | ".join(rivals) + " |", "|---|" + "---:|" * len(rivals)]
        for f in fractions:
            cells = []
            for mode in rivals:
                d = versus(f, mode, baseline)
                star = "*" if d and d["excludes_zero"] else ""
                text = "-" if d is None else f"{d['difference']:+.1f} [{d['lower']:+.1f}, {d['upper']:+.1f}]"
                cells.append(text + star)
            lines.append(f"| {100 * f:g}% | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
