"""Rationale rows taken from earlier runs (``attribution.reuse_rationales``) instead of attributed
again.

Attribution costs about as much per example as the teacher's answer. A row of another run's store
is the same row here when it was made by the same teacher weights (name, dtype, revision; neither
teacher fine-tuned) under the same attribution settings (method, steps, baseline, scope,
contrast...; the batch size aside), and, per example, for the same prompt text and the same
attributed target string (the teacher's answer or the gold one: where they agree, one row). The
store headers are checked first (a differing key is a one-line error naming it); then each row is
taken only when its prompt and target equal this run's, and its words are chosen again under this
run's ``rationale`` settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..data import Example
from ..errors import ConfigError
from ..run_dir import RunDir
from ..teacher.reuse import check_same_weights
from .extract import RationaleConfig, reselect_row
from .store import RationaleStore, read_store

# Speed and bookkeeping, not the scores; the target is compared row by row (a row attributed to the
# gold answer is the same row as one attributed to the teacher's, where the two answers agree).
NOT_COMPARED = ("batch_size", "splits", "reuse_rationales", "target")
_STORE = re.compile(r"^[a-z]+\.jsonl$")  # a split's store, not a process's shard


def _check(folder: Path, header: Mapping[str, Any], attribution: Mapping[str, Any], model: Any,
           finetuned: bool, they_finetuned: Any) -> None:
    where = f"config key 'attribution.reuse_rationales': {folder}"
    check_same_weights(where, header.get("teacher_model") or {}, they_finetuned, model, finetuned)
    made = header.get("attribution") or {}
    for key, value in attribution.items():
        if key not in NOT_COMPARED and made.get(key) != value:
            raise ConfigError(f"{where} has attribution.{key}={made.get(key)!r}, this run {value!r}")


def reusable_rationales(folders: list[str], attribution: Mapping[str, Any], model: Any,
                        finetuned: bool) -> dict[str, dict[str, Any]]:
    """Rows of the rationale stores in the run ``folders`` (every split), by example id, after the
    checks of the module docstring; the first folder that has an id wins. ``attribution``: this
    run's attribution settings as a dict; ``model``: its teacher's ModelConfig."""
    found: dict[str, dict[str, Any]] = {}
    for name in folders:
        folder = Path(name).expanduser()
        config = folder / "config.yaml"
        stores = sorted(p for p in RunDir(folder).rationales("train").parent.glob("*.jsonl") if _STORE.match(p.name))
        if not config.is_file() or not stores:
            raise ConfigError(f"config key 'attribution.reuse_rationales': {folder} holds no rationale store")
        source_teacher = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("teacher") or {}
        for path in stores:
            header, rows = read_store(path)
            _check(folder, header, attribution, model, finetuned, source_teacher.get("finetune"))
            for row in rows:
                found.setdefault(row["id"], row)
    return found


def adopt_reused_rows(store: RationaleStore, examples: list[Example], prompts: Mapping[str, str],
                      targets: Mapping[str, str | None], reused: Mapping[str, Mapping[str, Any]],
                      rat_cfg: RationaleConfig, teacher_answers: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Append to ``store`` the ``reused`` rows of ``examples`` whose prompt text and target equal
    this run's (``prompts``, ``targets`` by example id), their words chosen under ``rat_cfg`` and
    the example's own gold label and teacher answer. Returns how many."""
    new = []
    for ex in examples:
        row = reused.get(ex.id)
        if ex.id in store or row is None or row.get("prompt") != prompts[ex.id] or row.get("target") != targets[ex.id]:
            continue
        answer = (teacher_answers or {}).get(ex.id) or {}
        new.append({**reselect_row(dict(row), rat_cfg), "gold": ex.label, "teacher_answer": answer.get("answer"),
                    "teacher_correct": answer.get("correct") if answer else None})
    store.append(new)
    return len(new)
