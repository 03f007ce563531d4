"""The rationale store: an append-only JSONL file, one row per example, under one config.

The first line is a header with the config hash. Rows are appended and flushed batch by batch,
so a killed job keeps what it finished; on reopening, a torn last line is cut off, the ids
already present are skipped, and a header with another hash is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..run_dir import refusal


class RationaleStore:
    def __init__(self, path: str | Path, header: dict[str, Any], overwrite: bool = False) -> None:
        self.path = Path(path)
        self.header = {"kind": "header", **header}
        if "config_hash" not in header:
            raise ValueError("the store header needs a config_hash")
        self._done: set[str] = set()
        if self.path.exists() and overwrite:
            self.path.unlink()
        if self.path.exists():
            self._reopen()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.header, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def _reopen(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        good = data.rfind(b"\n") + 1
        if good < len(data):  # a row torn by a kill mid-write: drop it, it is redone
            with open(self.path, "r+b") as f:
                f.truncate(good)
        lines = data[:good].decode("utf-8").splitlines()
        if not lines:
            raise DataError(f"{self.path}: empty rationale store (no header); delete it to start over")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            raise DataError(f"{self.path}:1: the header is not valid JSON") from None
        if header.get("config_hash") != self.header["config_hash"]:
            raise refusal(self.path, "rationale store", header.get("config_hash"), self.header["config_hash"])
        for lineno, line in enumerate(lines[1:], 2):
            try:
                self._done.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError):
                raise DataError(f"{self.path}:{lineno}: not a valid store row") from None

    def __contains__(self, example_id: str) -> bool:
        return example_id in self._done

    def __len__(self) -> int:
        return len(self._done)

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = []
        for row in rows:
            if row["id"] in self._done:
                continue
            lines.append(json.dumps({**row, "config_hash": self.header["config_hash"]}, ensure_ascii=False) + "\n")
            self._done.add(row["id"])
        if lines:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())


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
