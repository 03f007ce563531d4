"""Data-parallel helpers for runs under ``accelerate launch`` (one process per device or core).

Single-process runs never initialise a process group: every helper is then a no-op. Under
``accelerate launch`` the stages divide their work: the Trainer runs data-parallel, attribution
gives each process its shard of the examples (the store merges them), and steps that write
shared files (prepare, answers, evaluation, reports) run on the main process while the others
wait.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import lru_cache
from typing import Any


def is_distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@lru_cache(maxsize=1)
def _state() -> Any:
    import torch
    from accelerate import PartialState

    # Without an accelerator, accelerate only joins the processes when told to stay on the CPU.
    return PartialState(cpu=not torch.cuda.is_available())


def rank() -> int:
    return _state().process_index if is_distributed() else 0


def world_size() -> int:
    return _state().num_processes if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (and writes its files); the others follow."""
    if not is_distributed():
        yield
        return
    with _state().main_process_first():
        yield
