"""The pool: inputs without labels, which the teacher labels for the students (``pool-*`` modes).

A pool comes from ``task.unlabeled`` (a file with the task's input fields and no label), from
``task.labeled`` (keep that many train labels and move the rest of train into the pool with its
labels removed: how a pool is measured on labeled data), or both. ``task.max_pool`` keeps the
start of a seeded order, so a smaller pool is the start of a larger one and the teacher's work
over the larger one serves both.

Pool examples carry no label, rationale or LLM answer (:func:`unlabeled`): what the prepare
stage writes to ``data/pool.jsonl`` cannot leak a label into a student.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, DataError
from .config import TaskConfig
from .example import Example
from .files import get_field, iter_rows

POOL = "pool"


def unlabeled(example: Example) -> Example:
    """``example`` with everything that tells its answer removed."""
    return Example(id=example.id, fields=dict(example.fields), label=None,  # type: ignore[arg-type]
                   choices=example.choices, meta={})


def pool_row(example: Example) -> dict:
    """A pool example as ``data/pool.jsonl`` holds it: no label field at all."""
    return {"id": example.id, "fields": dict(example.fields),
            "choices": list(example.choices) if example.choices is not None else None}


def shuffled(examples: Sequence[Example], seed: int, salt: str) -> list[Example]:
    order = list(examples)
    random.Random(f"{seed}:{salt}").shuffle(order)
    return order


def split_labeled(train: list[Example], cfg: TaskConfig) -> tuple[list[Example], list[Example]]:
    """(the ``task.labeled`` train examples that keep their labels, the rest without labels),
    both in source order; train as it is when ``task.labeled`` is unset."""
    if cfg.labeled is None:
        return train, []
    if cfg.labeled > len(train):
        raise DataError(f"config key 'task.labeled': {cfg.labeled} is more than the {len(train)} examples of "
                        "the train split")
    keep = {ex.id for ex in shuffled(train, cfg.seed, "labeled")[: cfg.labeled]}
    return [ex for ex in train if ex.id in keep], [unlabeled(ex) for ex in train if ex.id not in keep]


def read_unlabeled(cfg: TaskConfig, train: Sequence[Example]) -> list[Example]:
    """The rows of ``task.unlabeled``: the input fields (and choices) mapped by ``task.fields``;
    a label set task's rows take train's label set. A label in the file is not read."""
    path = Path(cfg.unlabeled or "").expanduser()
    fm = cfg.fields
    label_sets = {ex.choices for ex in train}
    shared = next(iter(label_sets)) if len(label_sets) == 1 and not fm.choices else None
    out = []
    for i, (where, row) in enumerate(iter_rows(path)):
        fields = {}
        for name in fm.content:
            value = get_field(where, row, name)
            if value is None or not isinstance(value, (str, int, float)) or not str(value).strip():
                raise DataError(f"{where}: input field '{name}' is empty or not text")
            fields[name] = str(value).strip()
        choices = shared
        if fm.choices:
            raw = get_field(where, row, fm.choices)
            raw = raw.split("|") if isinstance(raw, str) else raw
            if not isinstance(raw, (list, tuple)) or len(raw) < 2 or any(not str(c).strip() for c in raw):
                raise DataError(f"{where}: field '{fm.choices}' must hold at least 2 non-empty options")
            choices = tuple(str(c).strip() for c in raw)
        if choices is None and any(ex.choices for ex in train):
            raise DataError(f"{where}: no options for this choice task's input (map them with task.fields.choices)")
        ex_id = str(get_field(where, row, fm.id)) if fm.id else f"pool-{i}"
        out.append(Example(id=ex_id, fields=fields, label=None, choices=choices))  # type: ignore[arg-type]
    if not out:
        raise DataError(f"{path}: task.unlabeled holds no rows (an empty pool)")
    return out


def make_pool(splits: dict[str, list[Example]], cfg: TaskConfig) -> dict[str, list[Example]]:
    """``splits`` with train cut to ``task.labeled`` and the pool added (when one is configured);
    a pool id that is also a train, validation or test id is an error naming it."""
    if cfg.labeled is None and cfg.unlabeled is None:
        if cfg.max_pool is not None:
            raise ConfigError("config key 'task.max_pool': there is no pool (set task.unlabeled or task.labeled)")
        return splits
    train, moved = split_labeled(splits["train"], cfg)
    pool = moved + (read_unlabeled(cfg, train) if cfg.unlabeled else [])
    where = {ex.id: split for split in ("train", "validation", "test") for ex in splits[split]}
    moved_ids, seen = {ex.id for ex in moved}, set()
    for ex in pool:
        clash = "the pool" if ex.id in seen else None if ex.id in moved_ids else where.get(ex.id)
        if clash:
            raise DataError(f"{cfg.unlabeled or 'task.unlabeled'}: pool example id {ex.id!r} is also in {clash}")
        seen.add(ex.id)
    if not pool:
        raise DataError("config key 'task.labeled': it keeps every train example; the pool is empty")
    pool = shuffled(pool, cfg.seed, POOL)[: cfg.max_pool]
    return {**splits, "train": train, POOL: pool}
