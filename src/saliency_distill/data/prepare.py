"""Materialise a task's train / validation / test splits into ``<run_dir>/data``.

Sources differ (train+test, a single valid file, one pool); every task ends up with the same
three splits, carved with a fixed seed where the source lacks them. The manifest is written last
and records the config hash, so a finished stage is reused and a changed config is not mixed in.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from ..config import config_hash, to_dict
from ..errors import DataError
from ..io import write_json, write_jsonl
from ..run_dir import RunDir, announce_reuse, mark_made, reuse_or_refuse
from .config import TaskConfig
from .example import Example
from .pool import POOL, make_pool, pool_row
from .tasks import get_task

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"


def _carve(examples: list[Example], fraction: float, seed: int, salt: str) -> tuple[list[Example], list[Example]]:
    """Split off ``fraction`` of ``examples`` at random (seeded); both parts keep source order."""
    n = round(len(examples) * fraction)
    if fraction > 0 and len(examples) > 1:
        n = max(n, 1)
    order = list(range(len(examples)))
    random.Random(f"{seed}:{salt}").shuffle(order)
    carved = set(order[:n])
    rest = [ex for i, ex in enumerate(examples) if i not in carved]
    return rest, [ex for i, ex in enumerate(examples) if i in carved]


def _subsample(examples: list[Example], limit: int | None, seed: int, salt: str) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return examples
    keep, _ = _carve(examples, 1 - limit / len(examples), seed, salt)
    return keep[:limit]


def make_splits(source: dict[str, list[Example]], cfg: TaskConfig) -> dict[str, list[Example]]:
    """train / validation / test from whatever splits the source has."""
    train = source.get("train")
    validation = source.get("validation")
    test = source.get("test")
    if train is None:
        pool = source.get("all") or source.get("valid") or []
        if validation is not None and "all" not in source and "valid" not in source:
            pool, validation = validation, None
        if test is None:
            train, test = _carve(pool, cfg.test_fraction, cfg.seed, "test")
        else:
            train = pool
    elif test is None:
        train, test = _carve(train, cfg.test_fraction, cfg.seed, "test")
    if validation is None:
        train, validation = _carve(train, cfg.validation_fraction, cfg.seed, "validation")
    splits = {
        "train": _subsample(train, cfg.max_train, cfg.seed, "train"),
        "validation": _subsample(validation, cfg.max_validation, cfg.seed, "validation"),
        "test": _subsample(test, cfg.max_test, cfg.seed, "test-sub"),
    }
    seen: dict[str, str] = {}
    for split, examples in splits.items():
        for ex in examples:
            if ex.id in seen:
                raise DataError(f"task '{cfg.name}': example id {ex.id!r} occurs in {seen[ex.id]} and {split}")
            seen[ex.id] = split
    if not splits["train"] or not splits["test"]:
        raise DataError(f"task '{cfg.name}': too few examples to make train and test splits")
    return splits


def prepare(cfg: TaskConfig, run_dir: str | Path, overwrite: bool = False) -> dict[str, list[Example]]:
    """Write (or reuse) ``<run_dir>/data/{train,validation,test}.jsonl`` and the manifest."""
    task = get_task(cfg.name)
    data_dir = RunDir(run_dir).data
    manifest_path = data_dir / MANIFEST
    digest = config_hash(cfg)
    if reuse_or_refuse(manifest_path, digest, "prepared data", overwrite) is not None:
        announce_reuse(logger, "prepared data", data_dir)  # every later stage reads them again
        return {s: load_prepared(run_dir, s) for s in prepared_splits(run_dir)}
    splits = make_pool(make_splits(task.load_source(cfg), cfg), cfg)
    template = task.template_for(cfg)
    for examples in splits.values():
        for ex in examples[:1]:  # fail now, not in a later stage, if the template does not fit
            task.render(ex, cfg)
    for split, examples in splits.items():
        write_jsonl(data_dir / f"{split}.jsonl", (pool_row(ex) if split == POOL else ex.to_dict() for ex in examples))
    write_json(
        manifest_path,
        {
            "task": cfg.name,
            "config_hash": digest,
            "config": to_dict(cfg),
            "template": template,
            "answer": task.answer_type(cfg),
            "sizes": {s: len(v) for s, v in splits.items()},
            "with_llm_rationale": {s: sum(ex.llm_rationale is not None for ex in v) for s, v in splits.items()},
            "with_human_rationale": {s: sum(ex.human_rationale is not None for ex in v) for s, v in splits.items()},
        },
    )
    mark_made("prepared data", data_dir)
    return splits


def prepared_splits(run_dir: str | Path) -> list[str]:
    """train, validation, test, and the pool when the prepared data has one."""
    return [*SPLITS, *([POOL] if POOL in read_manifest(run_dir)["sizes"] else [])]


def load_prepared(run_dir: str | Path, split: str) -> list[Example]:
    path = RunDir(run_dir).data / f"{split}.jsonl"
    if not (RunDir(run_dir).data / MANIFEST).is_file():
        raise DataError(f"{Path(run_dir) / 'data'}: not prepared yet (run `saliency-distill prepare`)")
    with open(path, encoding="utf-8") as f:
        return [Example.from_dict(json.loads(line)) for line in f if line.strip()]


def read_manifest(run_dir: str | Path) -> dict:
    path = RunDir(run_dir).data / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: not prepared yet (run `saliency-distill prepare`)")
    return json.loads(path.read_text())
