"""Keep freed memory in the process, so that a training step does not page-fault its buffers in again.

glibc's malloc hands a large block (over 128 KB to 32 MB, adjusted as it goes) back to the kernel
when it is freed, and takes fresh zero-filled pages the next time. A training step frees and
allocates the same large buffers every time (bf16 copies of the weights under autocast, the dense
gradient of the embedding): on 2 CPU cores the page faults cost a third of a SmolLM2 step on
short rows (0.89 against 0.60 s, docs/pipeline.md), 1.18x on CommonsenseQA rows
(benchmarks/results/training_speed_memory_bf16.md). :func:`hold_freed_memory` tells malloc to
serve every block from its heap and never to give the heap back, so a freed buffer is reused as
it is. A training loop's peak memory stays about the same (3.82 against 3.71 GB in that table),
but memory freed by one stage stays with the process for the next: the demo's peak RSS rose from
11.8 to 12.9 GB (the teacher's freed pages, from its float32 cache; 7.6 GB with today's bfloat16 one).

The command line calls it at start; set ``SALIENCY_DISTILL_MALLOC=system`` to keep glibc's own
behaviour. A Python caller may call it once, early.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

ENV = "SALIENCY_DISTILL_MALLOC"
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
_NEVER = 2**31 - 1  # the largest value mallopt takes (an int): no trimming below 2 GiB of free top


def hold_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (see the module). Returns whether it
    did: False off Linux/glibc, or when ``SALIENCY_DISTILL_MALLOC=system``."""
    if os.environ.get(ENV, "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _NEVER) == 1
    logger.debug("malloc keeps freed memory: %s", done)
    return done


__all__ = ["ENV", "hold_freed_memory"]
