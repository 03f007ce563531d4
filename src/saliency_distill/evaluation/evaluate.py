"""The evaluate stage: a trained student answers a split on the "predict" task alone.

At test time the student sees its prompt template filled with the rendered example (the same
input it was trained on
in every training mode) and nothing else: no teacher, no rationale. Its greedy answer is scored
by :func:`~saliency_distill.data.answers.exact_match`. For choice tasks the choice it
finds most likely is scored too, which shows whether a model that words its answer badly still
ranks the right one first.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import field, to_dict
from ..data import Example, Task, TaskConfig
from ..data.answers import exact_match
from ..errors import ConfigError, DataError
from ..io import write_json, write_jsonl
from ..models import LoadedModel, native_dtype
from ..models.tokens import check_context

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
DEFAULT_TEMPLATE = "{input}\npredict:"  # the causal student's default format (student.modes.templates)


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = field(16, "examples per generation / choice-scoring batch")
    max_new_tokens: int = field(32, "tokens generated per answer")
    choice_scoring: bool = field(True, "choice tasks: also score the most likely choice (ranked accuracy)")
    max_examples: int | None = field(None, "evaluate only the first this many examples (all when unset)")
    bf16: bool | Literal["auto"] = field(
        "auto", "answer under bfloat16 autocast: true, false, or auto (where the model's device computes bf16 "
        "natively); 2.8x the answers/s of float32 for SmolLM2 on 2 AVX-512 BF16 cores"
    )

    def __post_init__(self) -> None:
        if self.bf16 not in (True, False, "auto"):
            raise ConfigError(f"config key 'bf16': {self.bf16!r} is not true, false or auto")
        for key in ("batch_size", "max_new_tokens", "max_examples"):
            value = getattr(self, key)
            if value is None and key == "max_examples":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config key '{key}': {value!r} must be a positive integer")


def identity(cfg: EvalConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that decide a student's evaluation: all but ``bf16``, which changes
    rounding only (so runs answered in float32 before it existed stay valid)."""
    return {k: v for k, v in to_dict(cfg).items() if k != "bf16"}


def answers_in_bf16(lm: LoadedModel, cfg: EvalConfig) -> bool:
    """Whether ``lm`` answers under bfloat16 autocast: as ``cfg.bf16`` says (auto: where its device
    computes bf16 natively), and only for float32 weights."""
    import torch

    param = next(lm.model.parameters())
    wanted = cfg.bf16 if cfg.bf16 != "auto" else native_dtype("bfloat16", str(param.device))
    return bool(wanted) and param.dtype == torch.float32


def _precision(lm: LoadedModel, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    import torch

    return torch.autocast(next(lm.model.parameters()).device.type, dtype=torch.bfloat16) if bf16 \
        else contextlib.nullcontext()


def student_prompt(task: Task, task_cfg: TaskConfig, example: Example, template: str = DEFAULT_TEMPLATE) -> str:
    """The student's input for ``example``: ``template`` with the rendered example as {input}."""
    if "{input}" not in template:
        raise ConfigError(f"student prompt template {template!r} has no {{input}}")
    return template.replace("{input}", task.render(example, task_cfg).text)


def evaluate_student(
    lm: LoadedModel, task: Task, task_cfg: TaskConfig, examples: list[Example], cfg: EvalConfig,
    template: str = DEFAULT_TEMPLATE, progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Greedy answers of ``lm`` with their correctness, and the accuracy metrics (``progress``: a
    bar with examples/s and the time left, for the answers and for the ranked choices).

    ``template`` is the student's prompt format (as in training), ``{input}`` standing for the
    rendered example.

    Rows: ``id``, ``prediction``, ``gold``, ``correct``; for choice tasks with
    ``cfg.choice_scoring`` also ``ranked_choice`` and ``ranked_correct``. Metrics: ``n``,
    ``accuracy`` and ``ranked_accuracy`` (None when not computed or nothing was evaluated), and
    ``bf16`` (whether it answered under bfloat16 autocast, :func:`answers_in_bf16`).
    """
    # Imported here: the teacher package imports this one (for its is_correct), so importing the
    # teacher at module level would make the two packages' import order matter.
    from ..teacher.generate import generate_answers

    if cfg.max_examples is not None:
        examples = examples[: cfg.max_examples]
    prompts = [student_prompt(task, task_cfg, ex, template) for ex in examples]
    ranked = cfg.choice_scoring and task.answer_type(task_cfg) == "choice"
    # Every prompt must fit the context with what is generated (or the longest choice scored).
    longest = [max((len(lm.tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for c in ex.choices or ()),
                   default=0) for ex in examples] if ranked else [0] * len(examples)
    check_context(lm, prompts, [f"example {ex.id}" for ex in examples],
                  [max(cfg.max_new_tokens, n) for n in longest], "tokens with its answer")
    bf16 = answers_in_bf16(lm, cfg)
    with _bar(len(examples), "student answers", progress) as bar, _precision(lm, bf16):
        predictions = generate_answers(lm, prompts, cfg.max_new_tokens, cfg.batch_size, tick=bar.update)
    rows = [
        {"id": ex.id, "prediction": pred, "gold": ex.label, "correct": exact_match(pred, ex)}
        for ex, pred in zip(examples, predictions)
    ]
    if ranked:
        with _bar(len(examples), "student ranks options", progress) as bar, _precision(lm, bf16):
            _add_ranked_choices(lm, examples, prompts, rows, cfg.batch_size, bar.update)
    metrics = {
        "n": len(rows),
        "accuracy": _mean(rows, "correct"),
        "ranked_accuracy": _mean(rows, "ranked_correct") if ranked else None,
        "bf16": bf16,
    }
    logger.debug("student %s: accuracy %s, ranked accuracy %s on %d examples",
                lm.name, metrics["accuracy"], metrics["ranked_accuracy"], metrics["n"])
    return rows, metrics


def _add_ranked_choices(
    lm: LoadedModel, examples: list[Example], prompts: list[str], rows: list[dict[str, Any]], batch_size: int,
    tick: Any = None,
) -> None:
    """Add the highest summed log-likelihood choice of every example to its row."""
    from ..teacher.scoring import score_choices  # see evaluate_student: avoids an import cycle

    missing = [ex.id for ex in examples if not ex.choices]
    if missing:
        raise DataError(f"example {missing[0]}: a choice task's example has no choices to rank")
    choices = [ex.choices or () for ex in examples]
    best = score_choices(lm, prompts, choices, batch_size, tick=tick).best(normalise=False)
    for row, ex, cs, i in zip(rows, examples, choices, best):
        row["ranked_choice"] = cs[i]
        row["ranked_correct"] = cs[i] == ex.label  # both are exact choice strings


def _bar(total: int, desc: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="ex", desc=desc, disable=not show)


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    # None rather than NaN for an empty split: NaN is not valid JSON.
    return sum(bool(r[key]) for r in rows) / len(rows) if rows else None


def write_predictions(
    path: str | Path, rows: list[dict[str, Any]], metrics: dict[str, Any], overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``path/predictions.jsonl`` and ``path/metrics.json`` (a folder), each atomically.

    Metrics go last, so their presence marks a finished evaluation; an existing one is an error
    unless ``overwrite``.
    """
    folder = Path(path)
    pred_path, metrics_path = folder / PREDICTIONS_FILE, folder / METRICS_FILE
    if not overwrite and (pred_path.exists() or metrics_path.exists()):
        raise ConfigError(f"{folder}: evaluation outputs exist already (use another folder or overwrite)")
    write_jsonl(pred_path, rows)
    write_json(metrics_path, metrics)
    logger.debug("wrote %d predictions and metrics to %s", len(rows), folder)
    return pred_path, metrics_path
