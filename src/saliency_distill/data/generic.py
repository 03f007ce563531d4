"""The user's own data: a JSONL / CSV / Parquet file (or a folder of split files), or a dataset
loaded with ``datasets.load_dataset`` (a hub id for users with the hub, or a local folder)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError
from .config import FieldMap, TaskConfig
from .example import Example, make_example
from .files import FORMATS, get_field, iter_rows

SPLIT_NAMES = ("train", "validation", "valid", "dev", "test")


def convert_rows(rows: Iterable[tuple[str, dict[str, Any]]], fm: FieldMap, prefix: str) -> list[Example]:
    out = []
    for i, (where, row) in enumerate(rows):
        choices = None
        if fm.choices:
            choices = get_field(where, row, fm.choices)
            if isinstance(choices, str):
                choices = [c for c in choices.split("|")]
        elif fm.labels:
            choices = list(fm.labels)
        label = get_field(where, row, fm.label)
        if isinstance(label, str) and label.strip().lstrip("-").isdigit() and choices is not None \
                and label.strip() not in [str(c).strip() for c in choices]:
            label = int(label)  # a CSV index into the choices
        out.append(
            make_example(
                where,
                id=get_field(where, row, fm.id) if fm.id else f"{prefix}-{i}",
                fields={name: get_field(where, row, name) for name in fm.content},
                label=label,
                choices=choices,
                human_rationale=(row.get(fm.rationale) or None) if fm.rationale else None,
                llm_rationale=(row.get(fm.llm_rationale) or None) if fm.llm_rationale else None,
            )
        )
    return out


def _canonical_split(name: str) -> str:
    return {"valid": "validation", "dev": "validation"}.get(name, name)


def load_file(cfg: TaskConfig) -> dict[str, list[Example]]:
    """One file = one pool ("all"); a folder = files named train/validation/test.<ext>."""
    if not cfg.path:
        raise DataError("task 'file' needs task.path: a JSONL/CSV/Parquet file or a folder of split files")
    path = Path(cfg.path).expanduser()
    if path.is_dir():
        found = {}
        for split in SPLIT_NAMES:
            for ext in (*FORMATS, "ndjson"):
                candidate = path / f"{split}.{ext}"
                if candidate.is_file():
                    found[_canonical_split(split)] = candidate
        if not found:
            raise DataError(f"{path}: no split files named {{train,validation,test}}.{{jsonl,csv,parquet}}")
        return {s: convert_rows(iter_rows(p), cfg.fields, s) for s, p in found.items()}
    return {"all": convert_rows(iter_rows(path), cfg.fields, "row")}


def load_hf(cfg: TaskConfig) -> dict[str, list[Example]]:
    """``datasets.load_dataset(task.path, task.hf_subset)``: hub id or local folder."""
    import datasets

    if not cfg.path:
        raise DataError("task 'hf' needs task.path: a dataset id (org/name) or a local dataset folder")
    try:
        dd = datasets.load_dataset(cfg.path, cfg.hf_subset)
    except Exception as e:  # datasets raises many types (network, missing files, bad config)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot load dataset '{cfg.path}': {first}") from None
    out = {}
    for split, ds in dd.items():
        rows = ((f"{cfg.path}[{split}] row {i}", dict(row)) for i, row in enumerate(ds))
        out[_canonical_split(split)] = convert_rows(rows, cfg.fields, split)
    return out
