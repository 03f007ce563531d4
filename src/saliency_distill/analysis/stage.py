"""The analyze stage's teacher part: faithfulness of each split's rationales, resumable.

Per-example figures go to ``analysis/<split>.faithfulness.jsonl``, an append-only file whose header
names the rationale store (its config hash) and the seed: rows are appended batch by batch, so a
killed run resumes, and a rerun over a complete file loads no teacher. A file made for another
store or seed is replaced (like the rest of ``analysis/``, it is derived from the store).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import build, config_hash
from ..errors import ConfigError, DataError
from ..models import LoadedModel, ModelConfig, load_model, release
from ..rationale import RationaleConfig, read_store
from ..rowstore import RowStore
from ..run_dir import RunDir
from .config import AnalysisConfig
from .faithfulness import score_rows, summarise_faithfulness, teacher_scorer

logger = logging.getLogger(__name__)

DEFINITIONS = 1  # bump when the figures' definitions change: old files are then recomputed


def faithfulness_path(run_dir: str | Path, split: str) -> Path:
    return RunDir(run_dir).analysis / f"{split}.faithfulness.jsonl"


def store_teacher(run_dir: str | Path, header: Mapping[str, Any]) -> ModelConfig:
    """The model that attributed a store: its header's teacher, fine-tuned when the teacher stage
    (whose hash the header records) saved a model."""
    model = build(ModelConfig, header.get("teacher_model") or {"name": header.get("teacher")}, prefix="teacher.model.")
    if header.get("teacher_hash") is None:
        return model
    path = RunDir(run_dir).teacher_metrics
    metrics = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if metrics.get("config_hash") != header["teacher_hash"]:
        raise ConfigError(f"{path}: the teacher changed since the rationale store was made (hash "
                          f"{metrics.get('config_hash')}, store {header['teacher_hash']}); re-run `attribute`")
    return build(ModelConfig, {**header.get("teacher_model", {}), "name": metrics.get("model_path") or model.name})


def _open(path: Path, header: dict[str, Any]) -> RowStore:
    stale = False
    if path.exists():
        try:
            stale = read_store(path)[0].get("config_hash") != header["config_hash"]
        except (DataError, ValueError):
            stale = True
    if stale:
        logger.info("replacing %s (made for another store or seed)", path)
    return RowStore(path, header, overwrite=stale, kind="faithfulness rows")


def faithfulness_stage(
    run_dir: str | Path,
    stores: Mapping[str, tuple[dict[str, Any], list[dict[str, Any]]]],
    cfg: AnalysisConfig,
    batch_size: int = 8,
    progress: bool = False,
    before_load: Callable[[], Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Faithfulness summary per split of ``stores`` (split -> the store's header and rows), {} when
    ``cfg.faithfulness`` is off. The teacher is loaded once, and only when a row is missing;
    ``before_load`` runs first (the experiment fine-tunes a missing teacher again there)."""
    if not cfg.faithfulness:
        return {}
    out: dict[str, dict[str, Any]] = {}
    lm: LoadedModel | None = None
    loaded: ModelConfig | None = None
    try:
        for split, (header, rows) in stores.items():
            chosen = rows[: cfg.faithfulness_max_examples]
            ident = {"store": header.get("config_hash"), "seed": cfg.faithfulness_seed, "definitions": DEFINITIONS}
            path = faithfulness_path(run_dir, split)
            done = _open(path, {"config_hash": config_hash(ident), **ident})
            todo = [row for row in chosen if row["id"] not in done]
            if todo:
                model = store_teacher(run_dir, header)
                if lm is None or model != loaded:
                    if lm is not None:
                        release(lm)
                    elif before_load is not None:
                        before_load()
                    lm, loaded = load_model(model), model
                scorer = teacher_scorer(lm, batch_size)
                rat_cfg = build(RationaleConfig, header.get("rationale") or {}, prefix="rationale.")
                bar = tqdm(total=len(chosen), initial=len(chosen) - len(todo), unit="ex",
                           desc=f"faithfulness {split}", disable=not progress)
                for start in range(0, len(todo), batch_size):
                    chunk = todo[start:start + batch_size]
                    done.append(score_rows(chunk, scorer, cfg.faithfulness_seed, rat_cfg))
                    bar.update(len(chunk))
                bar.close()
            by_id = {row["id"]: row for row in read_store(path)[1]}
            out[split] = {**summarise_faithfulness([by_id[row["id"]] for row in chosen]),
                          "seed": cfg.faithfulness_seed, "config_hash": config_hash(ident), "path": str(path)}
    finally:
        if lm is not None:
            release(lm)
    return out
