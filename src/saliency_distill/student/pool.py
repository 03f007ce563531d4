"""What the pool modes need besides the splits: which pool inputs to keep (the teacher's
confidence threshold, chosen on validation) and the training examples of a mode.

``student.pool_min_confidence`` is a probability, or ``auto``: the threshold t from
:data:`THRESHOLDS` under which the teacher's validation answers with a probability of at least t
are right more often than wrong by the largest margin (correct minus wrong among them, the lowest
t of equals). It reads the validation split only: the pool has no labels, and train's are the
student's own. ``student.pool_keep: random`` is the threshold's control: as many pool inputs as
the threshold keeps, drawn at random (each training seed draws its own).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Example
from ..data.pool import POOL
from ..errors import ConfigError
from .modes import MODES, confidence

THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def check_min_confidence(value: float | str | None, keep: str | None = None) -> None:
    if keep not in (None, "random"):
        raise ConfigError(f"config key 'student.pool_keep': {keep!r} is not 'random' (unset: the inputs the "
                          "teacher is sure of)")
    if keep == "random" and not value:
        raise ConfigError("config key 'student.pool_keep': random draws as many pool inputs as "
                          "student.pool_min_confidence keeps; set that too")
    if value is None or value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"config key 'student.pool_min_confidence': {value!r} is not a probability in [0, 1) "
                          "or 'auto'")


def choose_min_confidence(rows: Mapping[str, Mapping[str, Any]], examples: Sequence[Example]) -> float:
    """The ``auto`` threshold from the teacher's answers on labeled (validation) ``examples``."""
    scored = [(confidence(rows[ex.id], ex), bool(rows[ex.id]["correct"])) for ex in examples if ex.id in rows]
    if not scored:
        raise ConfigError("config key 'student.pool_min_confidence': auto needs the teacher's answers on the "
                          "validation split (add validation to teacher.splits)")

    def margin(t: float) -> int:
        return sum(1 if right else -1 for p, right in scored if p >= t)

    return max(THRESHOLDS, key=lambda t: (margin(t), -t))


def min_confidence(value: float | str | None, validation: Mapping[str, Mapping[str, Any]] | None,
                   examples: Sequence[Example]) -> float:
    """The threshold the pool modes train with (0 keeps every pool input)."""
    if value == "auto":
        return choose_min_confidence(validation or {}, examples)
    return float(value or 0.0)


def drawn_like(pool: Sequence[Example], answers: Mapping[str, Mapping[str, Any]], threshold: float,
               seed: int) -> list[Example]:
    """As many ``pool`` inputs as ``threshold`` keeps, drawn at random (seeded; source order)."""
    n = sum(ex.id in answers and confidence(answers[ex.id], ex) >= threshold for ex in pool)
    keep = set(random.Random(f"{seed}:pool-keep").sample(range(len(pool)), n))
    return [ex for i, ex in enumerate(pool) if i in keep]


def training_examples(mode: str, splits: Mapping[str, list[Example]], keep: str | None = None,
                      answers: Mapping[str, Mapping[str, Any]] | None = None, threshold: float = 0.0,
                      seed: int = 0) -> list[Example]:
    """A pool mode's examples are train's and the pool's (with ``keep == "random"``, the pool's
    drawn at random, as many as ``threshold`` keeps); every other mode's are train's."""
    if not MODES[mode].pool:
        return list(splits["train"])
    if not splits.get(POOL):
        raise ConfigError(f"config key 'student.modes': mode {mode} trains on a pool of inputs without labels; "
                          "set task.unlabeled (a file of inputs) or task.labeled (keep that many train labels)")
    pool = drawn_like(splits[POOL], answers or {}, threshold, seed) if keep == "random" else splits[POOL]
    return [*splits["train"], *pool]
