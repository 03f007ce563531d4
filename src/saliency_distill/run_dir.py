"""The run folder: every path a run writes, and the one rule for reusing what is already there.

A stage's output is reused when the record it left says it was made under the same
configuration (its hash); it is refused with a one-line error naming the file when another
configuration made it, unless the caller was given ``--overwrite``, which removes it.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)


class RunDir:
    """Paths inside one run folder (``run_dir``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def teacher_metrics(self) -> Path:
        return self.teacher / "metrics.json"

    def answers(self, split: str) -> Path:
        return self.teacher / f"answers_{split}.jsonl"

    def rationales(self, split: str, rank: int | None = None) -> Path:
        """The rationale store of ``split``; with ``rank``, that process's shard."""
        name = f"{split}.jsonl" if rank is None else f"{split}.rank{rank}.jsonl"
        return self.root / "rationales" / name

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    def student(self, mode: str, seed: int) -> Path:
        return self.root / "students" / mode / f"seed{seed}"

    @property
    def report(self) -> Path:
        return self.root / "report"


_ANNOUNCED: set[str] = set()  # outputs whose reuse this process has already reported


def announce_reuse(log: logging.Logger, what: str, path: str | Path) -> None:
    """Log "reusing <what> in <path>" once per process and output (later stages that read an
    earlier stage's output again say it at DEBUG level): one line per stage in a run's log."""
    key = f"{what}\0{path}"
    log.log(logging.DEBUG if key in _ANNOUNCED else logging.INFO, "reusing %s in %s", what, path)
    _ANNOUNCED.add(key)


def mark_made(what: str, path: str | Path) -> None:
    """This process has just made ``what`` in ``path``: a later stage that reads it again does not
    announce it as reused (it says so at DEBUG level)."""
    _ANNOUNCED.add(f"{what}\0{path}")


def refusal(path: str | Path, what: str, found: Any, wanted: Any, remedy: str = "use another run_dir or --overwrite"
            ) -> ConfigError:
    """The one-line error for an output that another configuration made."""
    return ConfigError(f"{path}: {what} made under another config (hash {found}, now {wanted}); {remedy}")


def reuse_or_refuse(record: str | Path, wanted: str, what: str, overwrite: bool = False,
                    remove: str | Path | None = None, key: str = "config_hash",
                    also: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The JSON record at ``record`` when its ``key`` is ``wanted`` or one of ``also`` (the same
    output as an earlier version hashed it): the stage is done, reuse it. None when there is none,
    or when ``overwrite`` removed it (and ``remove``, a file or folder of the old output); a
    :func:`refusal` otherwise."""
    path = Path(record)
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        found = None
    if found == wanted or (found is not None and found in also):
        return json.loads(path.read_text(encoding="utf-8"))
    if not overwrite:
        raise refusal(path, what, found, wanted)
    logger.info("--overwrite: removing %s (made under another config)", remove or path)
    path.unlink()
    if remove is not None:
        target = Path(remove)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return None
