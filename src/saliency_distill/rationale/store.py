"""The rationale store: a :class:`~saliency_distill.rowstore.RowStore`, one row per example,
under one config; reading it whole, and merging the shards of data-parallel processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..rowstore import RowStore
from ..run_dir import refusal


class RationaleStore(RowStore):
    """A row store named "rationale store" in its errors."""

    def __init__(self, path: str | Path, header: dict[str, Any], overwrite: bool = False) -> None:
        super().__init__(path, header, overwrite, kind="rationale store")


def read_store(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, rows) of a store file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: rationale store not found (run `saliency-distill attribute`)")
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.endswith("\n")]
    if not lines:
        raise DataError(f"{path}: empty rationale store")
    header = json.loads(lines[0])
    return header, [json.loads(line) for line in lines[1:]]


def merge_stores(shards: list[Path], dest: Path, order: list[str]) -> int:
    """Merge per-process store shards (same header) into ``dest``, rows in ``order``; atomic."""
    from ..io import atomic_open

    header: dict[str, Any] | None = None
    rows: dict[str, dict[str, Any]] = {}
    for shard in shards:
        h, shard_rows = read_store(shard)
        if header is not None and h.get("config_hash") != header.get("config_hash"):
            raise ConfigError(f"{shard}: shard made under another configuration than {shards[0]}")
        header = h
        for row in shard_rows:
            rows.setdefault(row["id"], row)
    if header is None:
        raise DataError(f"{dest}: no shards to merge")
    if dest.exists():
        old, _ = read_store(dest)
        if old.get("config_hash") != header.get("config_hash"):
            raise refusal(dest, "rationale store", old.get("config_hash"), header.get("config_hash"))
    with atomic_open(dest) as f:
        f.write(json.dumps(header, ensure_ascii=False) + "\n")
        for ex_id in order:
            if ex_id in rows:
                f.write(json.dumps(rows[ex_id], ensure_ascii=False) + "\n")
    return sum(ex_id in rows for ex_id in order)
