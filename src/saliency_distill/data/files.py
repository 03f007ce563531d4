"""Reading rows from JSONL, JSON arrays, CSV and Parquet with the location of every row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError

FORMATS = ("jsonl", "json", "csv", "parquet")


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    return path


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (``file:line``, row) for each non-blank line; bad JSON names its line."""
    require_file(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def read_json_array(path: Path) -> list[Any]:
    require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array")
    return data


def iter_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows of a JSONL / JSON-array / CSV / Parquet file, by extension."""
    require_file(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        yield from iter_jsonl(path)
    elif suffix == "json":
        # A .json file may hold JSON lines (as the DSbS files do) or one array.
        with open(path, encoding="utf-8") as f:
            head = f.read(1024).lstrip()
        if head.startswith("["):
            for i, row in enumerate(read_json_array(path)):
                if not isinstance(row, dict):
                    raise DataError(f"{path}: item {i}: expected a JSON object")
                yield f"{path}: item {i}", row
        else:
            yield from iter_jsonl(path)
    elif suffix == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise DataError(f"{path}: CSV file has no header row")
            for row in reader:
                yield f"{path}:{reader.line_num}", dict(row)
    elif suffix == "parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several unrelated types for bad files
            raise DataError(f"{path}: cannot read Parquet ({str(e).splitlines()[0]})") from None
        for i, row in enumerate(table.to_pylist()):
            yield f"{path}: row {i}", row
    else:
        raise DataError(f"{path}: unsupported file type '.{suffix}' (use one of {list(FORMATS)})")


def get_field(where: str, row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise DataError(f"{where}: missing field '{key}' (fields: {', '.join(map(str, row))})")
    return row[key]
