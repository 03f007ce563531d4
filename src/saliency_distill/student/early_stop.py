"""Early stopping on the validation split: evaluate during training, keep the best weights.

:class:`ValidationStopper` evaluates the student ``evaluations`` times, evenly spread over the
run (and at its last step), with a function given by the student stage (its accuracy on the
validation split). Whenever the accuracy is the best so far it writes the weights to
``<folder>/best.safetensors`` (under a temporary name, then renamed), and it writes the history to
``<folder>/validation.json`` after that; after ``patience`` evaluations without a better accuracy
it stops the training, but never before ``min_fraction`` of the steps (a student may sit at
chance for a while before it learns). A killed run that resumes from a checkpoint reads the history back, so no
evaluation is lost or repeated. The stage then loads the best weights before the test split.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ..config import field
from ..errors import ConfigError
from ..io import write_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarlyStopConfig:
    enabled: bool = field(
        False, "evaluate on the validation split during training, keep the best weights and stop after "
        "`patience` evaluations without improvement (the test split is then read with the best weights)"
    )
    evaluations: int = field(8, "validation evaluations, evenly spread over the run")
    patience: int = field(3, "stop after this many evaluations without a better validation accuracy")
    min_fraction: float = field(
        1.0, "never stop before this share of the training steps: 1 (default) trains every step and only keeps "
        "the best weights, because a student can sit at chance for half its run before it learns (e-SNLI: "
        "stopped at 50% it kept 34.5%, trained on it reached 60%); 0 stops as soon as patience runs out"
    )
    max_examples: int | None = field(200, "validation examples per evaluation (all when unset)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ConfigError(f"config key 'student.early_stopping.min_fraction': {self.min_fraction} is not in [0, 1]")
        for key in ("evaluations", "patience", "max_examples"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"config key 'student.early_stopping.{key}': {value!r} must be a positive integer")

BEST = "best.safetensors"
HISTORY = "validation.json"


class ValidationStopper(TrainerCallback):
    """Evaluate with ``evaluate(model) -> accuracy`` during training; keep the best; stop on patience."""

    def __init__(self, evaluate: Callable[[], float], evaluations: int, patience: int, folder: Path,
                 min_fraction: float = 0.0) -> None:
        self.evaluate, self.evaluations, self.patience = evaluate, evaluations, patience
        self.min_fraction = min_fraction
        self.folder = Path(folder)
        self.every = 1
        path = self.folder / HISTORY
        self.history: list[dict[str, Any]] = json.loads(path.read_text())["history"] if path.is_file() else []

    @property
    def best(self) -> dict[str, Any] | None:
        """The first evaluation with the highest accuracy (earlier wins a tie)."""
        return max(self.history, key=lambda h: (h["accuracy"], -h["step"])) if self.history else None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.every = max(1, math.ceil(state.max_steps / self.evaluations))

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
        step = state.global_step
        if step % self.every != 0 and step != state.max_steps:
            return
        done = {h["step"]: h for h in self.history}
        if step not in done:  # a resumed run does not evaluate a step twice
            was_training = model.training
            model.eval()
            accuracy = float(self.evaluate())
            model.train(was_training)
            before = self.best
            self.history.append({"step": step, "accuracy": accuracy})
            if before is None or accuracy > before["accuracy"]:
                self._save_best(model)
            if state.is_world_process_zero:
                write_json(self.folder / HISTORY, {"history": self.history, "best": self.best})
            logger.info("step %d: validation accuracy %.4f (best %.4f at step %d)", step, accuracy,
                        self.best["accuracy"], self.best["step"])
        best = self.best
        since = sum(1 for h in self.history if h["step"] > best["step"] and h["step"] <= step)
        if since >= self.patience and step >= self.min_fraction * state.max_steps:
            logger.info("early stop at step %d: no better validation accuracy for %d evaluations", step, since)
            control.should_training_stop = True

    def _save_best(self, model: Any) -> None:
        from safetensors.torch import save_model

        from ..distributed import is_main

        if not is_main():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{BEST}.tmp"
        save_model(model, str(tmp))  # handles tied weights
        os.replace(tmp, self.folder / BEST)


def load_best(model: Any, folder: Path) -> dict[str, Any] | None:
    """Load the best weights kept by :class:`ValidationStopper` into ``model``; its history record."""
    from safetensors.torch import load_model

    path = Path(folder) / HISTORY
    if not path.is_file() or not (Path(folder) / BEST).is_file():
        return None
    load_model(model, str(Path(folder) / BEST))
    return json.loads(path.read_text())
