"""The data stage's configuration."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import field
from ..errors import ConfigError


@dataclass(frozen=True)
class FieldMap:
    """Where a user's file (or HF dataset) keeps each part of an example."""

    content: list[str] = field(["question"], "content fields, in prompt order")
    label: str = field("label", "gold label field: a choice's text, or an index into choices/labels")
    choices: str | None = field(None, "field holding a list of choices ('|'-separated in CSV)")
    labels: list[str] | None = field(None, "closed label set for tasks without per-row choices")
    id: str | None = field(None, "id field; the row number when unset")
    rationale: str | None = field(None, "human rationale field, if any")
    llm_rationale: str | None = field(None, "LLM-written rationale field, for llm-rationale mode")


@dataclass(frozen=True)
class TaskConfig:
    name: str = field("quartz", "task: cqa, svamp, anli1, esnli, quartz, file (own JSONL/CSV/Parquet) or hf")
    path: str | None = field(
        None, "DSbS folder (cqa...), data file or folder (file), dataset id or local folder (hf)"
    )
    hf_subset: str | None = field(None, "HF dataset configuration name (hf task)")
    fields: FieldMap = field(FieldMap(), "field names of a file/hf task")
    template: str | None = field(None, "prompt template with {field} and {choices}; task default if unset")
    seed: int = field(0, "seed of every split and subsample")
    validation_fraction: float = field(0.1, "share of train carved out as validation when the source has none")
    test_fraction: float = field(0.2, "share carved out as test when the source has no test split")
    max_train: int | None = field(None, "subsample train to at most this many examples (seeded)")
    max_validation: int | None = field(None, "subsample validation to at most this many examples")
    max_test: int | None = field(None, "subsample test to at most this many examples")
    unlabeled: str | None = field(
        None, "a file (JSONL/CSV/Parquet) of inputs without labels, with the input fields of task.fields: the pool "
        "the teacher labels for the pool-* student modes")
    labeled: int | None = field(
        None, "keep this many train labels (seeded) and move the rest of train into the pool with its labels "
        "removed: how a pool is measured on labeled data")
    max_pool: int | None = field(None, "at most this many pool inputs (a seeded order: a smaller pool is the "
                                 "start of a larger one)")

    def __post_init__(self) -> None:
        for key in ("validation_fraction", "test_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"config key 'task.{key}': {value} is not in [0, 1)")
        for key in ("max_train", "max_validation", "max_test", "labeled", "max_pool"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"config key 'task.{key}': {value} must be at least 1")
