"""An append-only JSONL store of per-example rows, for stages that must survive a kill.

The first line is a header with the config hash. Rows are appended and flushed batch by batch,
so a killed job keeps what it finished; on reopening, a torn last line is cut off, the ids
already present are skipped, and a header with another hash is refused rather than mixed. The
rationale store, the faithfulness rows and the teacher's answers in progress are such stores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import DataError
from .run_dir import refusal


class RowStore:
    """Append-only JSONL rows (one per example id) under a header with a ``config_hash``; ``kind``
    names the store in errors."""

    def __init__(self, path: str | Path, header: dict[str, Any], overwrite: bool = False,
                 kind: str = "row store") -> None:
        self.path = Path(path)
        self.kind = kind
        self.header = {"kind": "header", **header}
        if "config_hash" not in header:
            raise ValueError("the store header needs a config_hash")
        self._done: set[str] = set()
        if self.path.exists() and overwrite and self._made_by() != self.header["config_hash"]:
            self.path.unlink()  # another config's rows; this config's are kept and resumed
        if self.path.exists():
            self._reopen()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.header, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def _made_by(self) -> str | None:
        """The config hash in the file's header; None when it cannot be read."""
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.loads(f.readline()).get("config_hash")
        except (OSError, ValueError, AttributeError):
            return None

    def _reopen(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        good = data.rfind(b"\n") + 1
        if good < len(data):  # a row torn by a kill mid-write: drop it, it is redone
            with open(self.path, "r+b") as f:
                f.truncate(good)
        lines = data[:good].decode("utf-8").splitlines()
        if not lines:
            raise DataError(f"{self.path}: empty {self.kind} (no header); delete it to start over")
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            raise DataError(f"{self.path}:1: the header is not valid JSON") from None
        if header.get("config_hash") != self.header["config_hash"]:
            raise refusal(self.path, self.kind, header.get("config_hash"), self.header["config_hash"])
        for lineno, line in enumerate(lines[1:], 2):
            try:
                self._done.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError):
                raise DataError(f"{self.path}:{lineno}: not a valid {self.kind} row") from None

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

    def rows(self) -> list[dict[str, Any]]:
        """The stored rows, in the order they were appended (without their ``config_hash``)."""
        with open(self.path, encoding="utf-8") as f:
            lines = [line for line in f if line.endswith("\n")][1:]
        return [{k: v for k, v in json.loads(line).items() if k != "config_hash"} for line in lines]
