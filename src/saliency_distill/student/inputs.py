"""What one student run (a mode and a seed) trains on besides its examples and labels: the
explanations of a rationale mode, the second reading of a consistency mode, and the identity
of everything that made them (so that a changed teacher or store never reuses an old run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import to_dict
from ..data import get_task
from ..data.pool import POOL
from .consistency import masked_inputs
from .modes import Mode
from .pool import training_examples

Store = tuple[dict[str, Any], list[dict[str, Any]]]  # a rationale store's header and rows


def run_inputs(
    mode: Mode, seed: int, cfg: Any, splits: Mapping[str, list[Any]], stores: Mapping[str, Store],
    identity: Mapping[str, Any] | None, teacher_hash: str | None, kd: bool,
) -> tuple[dict[str, str] | None, dict[str, str] | None, dict[str, Any]]:
    """(explanations by example id, second readings by example id, the run's identity additions)
    for ``mode`` and ``seed`` under the experiment config ``cfg``; ``stores`` are the rationale
    stores by split (train, and the pool's), ``kd``: logit distillation is on."""
    from ..rationale import random_rationales

    task = get_task(cfg.task.name)
    rows = {r["id"]: r for _, split_rows in stores.values() for r in split_rows}
    explain = {i: r["rationale"] for i, r in rows.items()} if stores else None
    masked = None
    made_by: dict[str, Any] = dict(identity or {})
    if mode.needs_teacher or kd:
        made_by["teacher"] = teacher_hash
    if mode.needs_rationales:  # the pool's store too, for a pool mode
        made_by["rationales"] = "+".join(stores[s][0]["config_hash"] for s in (["train", POOL] if mode.pool
                                                                               else ["train"]))
    if mode.pool:
        made_by["pool_inputs"] = len(splits[POOL])
    if mode.explain == "random":
        examples = training_examples(mode.name, splits)
        explain = random_rationales(task, cfg.task, examples, cfg.rationale, seed)
        made_by["rationale"] = to_dict(cfg.rationale)
    if mode.consistency:
        examples = training_examples(mode.name, splits)
        masked = masked_inputs(task, cfg.task, examples, mode.consistency, cfg.student.mask_fraction, seed, rows)
    return explain, masked, made_by
