"""The Trainer callbacks of supervised fine-tuning: logs at DEBUG, a progress bar in examples,
timed checkpoints, and the wall time of every sitting at each save. :mod:`.trainer` adds them."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from transformers import ProgressCallback, TrainerCallback


class LogCallback(TrainerCallback):
    """Trainer logs (loss, learning rate) go to the training module's logger at DEBUG (the progress bar
    shows the run; the default callback would print them)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if state.is_world_process_zero and logs:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in logs.items() if k != "total_flos"}
            logging.getLogger("saliency_distill.training.sft").debug(
                "step %d/%d %s", state.global_step, state.max_steps, shown)


class BarCallback(ProgressCallback):
    """The progress bar in training examples (examples/s, ETA), without the log lines it would print under it."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from tqdm.auto import tqdm

        self.per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps * self.per_step, desc="training", unit="ex",
                                     dynamic_ncols=True)
        self.current_step = 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            self.training_bar.update((state.global_step - self.current_step) * self.per_step)
            self.current_step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        return None


class TimedCheckpoints(TrainerCallback):
    """Ask for a checkpoint when ``minutes`` passed since the last one (or the start), and at
    least 20 times as long as the last save took, so that saving costs at most about 5%."""

    def __init__(self, minutes: float) -> None:
        self.interval = minutes * 60.0
        self.last = time.monotonic()
        self.asked_at: float | None = None
        self.save_seconds = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.last = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        now = time.monotonic()
        due = now - self.last >= max(self.interval, 20.0 * self.save_seconds) and state.global_step < state.max_steps
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([int(due)])  # every process must agree: a save has barriers
            torch.distributed.broadcast(flag, src=0)
            due = bool(flag.item())
        if due:
            control.should_save = True
            self.asked_at = now

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        now = time.monotonic()
        if self.asked_at is not None:
            self.save_seconds = now - self.asked_at
            self.asked_at = None
        self.last = now


class ElapsedAtSaves(TrainerCallback):
    """Write the training time so far, ``before`` (earlier sittings) included, into every
    checkpoint: a resumed run then reports the whole run's wall time, not its last sitting's."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        from ..io import write_json
        from .checkpoints import ELAPSED

        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_json(folder / ELAPSED, {"wall_seconds": round(self.elapsed(), 3)})


class LogAtSaves(TrainerCallback):
    """Log the loss at every checkpoint, so that a resumed run logs the same windows as an
    uninterrupted one (the Trainer restarts its loss window at the resumed step: with logs every 10
    steps and a checkpoint at step 4, the first log after a resume would average 6 steps, not 10).
    Goes after every callback that asks for a save."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if control.should_save:
            control.should_log = True


def callbacks(progress_bar: bool, save_minutes: float | None) -> list[Any]:
    out: list[Any] = [LogCallback()]
    if progress_bar:
        out.append(BarCallback())
    if save_minutes is not None:
        out.append(TimedCheckpoints(save_minutes))
    return [*out, LogAtSaves()]
