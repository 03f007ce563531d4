"""Teacher answers taken from earlier runs (``teacher.reuse_answers``) instead of computed again.

A teacher run over thousands of inputs costs hours on a CPU; a second run over some of the same
inputs (a pool study over the study's train rows, a new student config) need not pay again. A
source run qualifies only when its teacher would have asked the same question the same way: the
same model (name, dtype, revision), not fine-tuned (a fine-tuned teacher depends on the labels it
saw), the same format, shots, chat wrapping and scoring, the same demonstrations (by id), the same
stop strings and token budget for free-form tasks, and the same calibration method: a calibrated
source's rows are taken back to the raw scores it kept (``logprobs_raw``, ``answer_uncalibrated``)
and calibrated again with this run's own fit. Anything else is refused with the key that differs.
Rows are matched by example id, and a choice row must name one of the current example's options;
its ``gold`` and ``correct`` are set from the current example (a pool example has none). Scores are those of the
source's batches, so they may differ from a fresh run's in the last digits (padding).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..data.example import Example
from ..errors import ConfigError
from ..run_dir import RunDir

# The teacher keys that decide its answers (model keys under "model").
SAME_MODEL = ("name", "dtype", "revision")
SAME_TEACHER = ("format", "shots", "chat", "scoring")
SAME_FREE_FORM = ("stop", "max_new_tokens")


def _source_teacher(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the source run's teacher config, its teacher metrics); a one-line error when either is missing."""
    config_path, metrics_path = folder / "config.yaml", RunDir(folder).teacher_metrics
    for path in (config_path, metrics_path):
        if not path.is_file():
            raise ConfigError(f"config key 'teacher.reuse_answers': {path} is missing (not a finished teacher run)")
    teacher = (yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}).get("teacher") or {}
    return teacher, json.loads(metrics_path.read_text(encoding="utf-8"))


def check_same_weights(where: str, theirs: dict[str, Any], they_finetuned: Any, model: Any, finetuned: bool) -> None:
    """A one-line ConfigError unless a source's teacher model (its config dict ``theirs``) is this
    run's ``model`` by name, dtype and revision, and neither teacher was fine-tuned."""
    for key in SAME_MODEL:
        if theirs.get(key) != getattr(model, key):
            raise ConfigError(f"{where} has teacher.model.{key}={theirs.get(key)!r}, this run {getattr(model, key)!r}")
    if they_finetuned or finetuned:
        raise ConfigError(f"{where}: a fine-tuned teacher's work is not reused (set teacher.finetune=false)")


def check_source(folder: Path, cfg: Any, prompt: dict[str, Any], free_form: bool) -> None:
    """Raise a one-line ConfigError naming the first teacher key in which ``folder`` differs."""
    teacher, metrics = _source_teacher(folder)
    where = f"config key 'teacher.reuse_answers': {folder}"
    check_same_weights(where, teacher.get("model") or {}, teacher.get("finetune"), cfg.model, cfg.finetune)
    for key in (*SAME_TEACHER, *(SAME_FREE_FORM if free_form else ())):
        if teacher.get(key) != getattr(cfg, key):
            raise ConfigError(f"{where} has teacher.{key}={teacher.get(key)!r}, this run {getattr(cfg, key)!r}")
    theirs_calibration = teacher.get("calibration", "none")
    if theirs_calibration not in ("none", cfg.calibration):
        raise ConfigError(f"{where} has teacher.calibration={theirs_calibration!r}, this run {cfg.calibration!r} "
                          "(reuse an uncalibrated run, or calibrate the same way)")
    theirs = metrics.get("prompt") or {}
    if theirs.get("demonstrations") != prompt.get("demonstrations"):
        raise ConfigError(f"{where} used other demonstrations ({theirs.get('demonstrations')} vs "
                          f"{prompt.get('demonstrations')})")


def reusable_rows(folders: list[str], cfg: Any, prompt: dict[str, Any], examples: list[Example],
                  free_form: bool, is_correct: Callable[[Example, str], bool | None]) -> dict[str, dict[str, Any]]:
    """Answer rows for ``examples`` found in the source runs ``folders`` (any split), by example id,
    with ``gold``/``correct`` set from the current examples (``is_correct``: the rule that scores
    the teacher). The first source that has an id wins."""
    found: dict[str, dict[str, Any]] = {}
    for name in folders:
        folder = Path(name).expanduser()
        check_source(folder, cfg, prompt, free_form)
        found |= rows_in(folder, [ex for ex in examples if ex.id not in found], is_correct)
    return found


def rows_in(folder: Path, examples: list[Example], is_correct: Callable[[Example, str], bool | None],
            ) -> dict[str, dict[str, Any]]:
    """The finished answer rows of ``folder``'s teacher for ``examples`` (uncalibrated, scored
    against the current examples), by example id; no check that its teacher asked the same way."""
    wanted = {ex.id: ex for ex in examples}
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(RunDir(folder).teacher.glob("answers_*.jsonl")):
        if path.name.endswith(".partial.jsonl"):
            continue
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                row = json.loads(line) if line.strip() else None
                ex = wanted.get(row["id"]) if row else None
                if ex is None or ex.id in found:
                    continue
                if ex.choices is not None and row.get("answer") not in ex.choices:
                    raise ConfigError(f"{path}:{lineno}: answer {row.get('answer')!r} is not an option of "
                                      f"example {ex.id} here (another dataset version?)")
                row = uncalibrated(row)
                answer = row.get("answer")
                found[ex.id] = {**row, "gold": ex.label, "correct": answer is not None and is_correct(ex, answer)}
    return found


def uncalibrated(row: dict[str, Any]) -> dict[str, Any]:
    """An answer row as it was before calibration: the raw scores and answer that a calibrated row
    keeps, without its target (this run's calibration writes it again)."""
    if "logprobs_raw" not in row:
        return row
    kept = {k: v for k, v in row.items() if k not in ("logprobs_raw", "answer_uncalibrated", "target")}
    return {**kept, "answer": row["answer_uncalibrated"], "logprobs": row["logprobs_raw"]}
