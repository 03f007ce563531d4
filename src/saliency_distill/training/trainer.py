"""The HF Trainer with the distillation loss, and the callbacks of supervised fine-tuning.

:class:`DistillTrainer` trains every mode with one loss, :func:`.losses.weighted_loss` at the
targets laid out by :mod:`.packing`. It weighs the targets of each optimizer step over all its
micro-batches (:func:`.losses.target_weights`), so the loss it returns is already scaled for
gradient accumulation, and it runs a causal model's LM head only at the target positions.
This module imports transformers; :mod:`.sft` imports it when training starts.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import torch
from transformers import ProgressCallback, Trainer, TrainerCallback

from .losses import PREDICT, target_weights, weighted_loss

logger = logging.getLogger(__name__)

_TARGET_KEYS = ("target_index", "target_ids", "target_task", "target_seq", "target_weight")


class DistillTrainer(Trainer):
    """Trainer whose loss is ``alpha * L_predict + (1 - alpha) * L_explain`` over the targets.

    Batches come from :func:`.packing.causal_batch` or :func:`.packing.seq2seq_batch`. A batch
    of one task is plain fine-tuning: with ``average="token"`` its loss is the model's own
    (the mean over the step's target tokens).
    """

    def __init__(self, *args: Any, alpha: float = 1.0, average: str = "token", seq2seq: bool = False,
                 target_logits: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha, self.average, self.seq2seq, self.target_logits = alpha, average, seq2seq, target_logits
        self.loss_is_scaled_for_ga = True  # weights are normalised over the whole step

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list, Any]:
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        _add_weights(batches, self.alpha, self.average)
        return batches, num_items

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if "target_weight" not in inputs:  # called outside the training loop: weigh this batch alone
            _add_weights([inputs], self.alpha, self.average)
        logits, outputs = logits_at_targets(model, inputs, self.seq2seq, self.target_logits,
                                            bare=self.accelerator.unwrap_model(model))
        loss = weighted_loss(logits, inputs["target_ids"], inputs["target_weight"])
        return (loss, outputs) if return_outputs else loss


def logits_at_targets(model: Any, batch: dict[str, Any], seq2seq: bool = False, only_targets: bool = True,
                      bare: Any = None) -> tuple[torch.Tensor, Any]:
    """The logits (N, V) that predict a batch's N targets, and the model's outputs.

    ``batch`` is laid out by :mod:`.packing`; ``model`` may be wrapped (DDP), ``bare`` is the
    unwrapped model (default: ``model``). With ``only_targets`` a causal model's LM head runs
    at the target positions alone (:func:`head_at`); otherwise on every position.
    """
    bare = model if bare is None else bare
    index = batch["target_index"]
    inputs = {k: v for k, v in batch.items() if k not in _TARGET_KEYS}
    if seq2seq:
        labels = inputs.pop("labels")
        inputs["decoder_input_ids"] = bare.prepare_decoder_input_ids_from_labels(labels=labels)
        outputs = model(**inputs)
        return outputs.logits.reshape(-1, outputs.logits.size(-1)).index_select(0, index), outputs
    inputs["attention_mask"] = _mask_for(bare, inputs["attention_mask"])
    with head_at(bare, index) if only_targets else contextlib.nullcontext():
        outputs = model(**inputs, use_cache=False)
    logits = outputs.logits
    if not only_targets:
        logits = logits.reshape(-1, logits.size(-1)).index_select(0, index)
    return logits, outputs


def _add_weights(batches: list[dict[str, Any]], alpha: float, average: str) -> None:
    weights = target_weights([b["target_task"] for b in batches], [b["target_seq"] for b in batches], alpha, average)
    for batch, w in zip(batches, weights):
        batch["target_weight"] = w


def _mask_for(model: Any, mask: torch.Tensor) -> torch.Tensor:
    """A boolean 4D mask as the model's attention wants it: eager attention adds it to the scores."""
    if mask.dim() == 4 and getattr(model.config, "_attn_implementation", "sdpa") == "eager":
        return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill(
            ~mask, torch.finfo(torch.float32).min)
    return mask


@contextlib.contextmanager
def head_at(model: Any, index: torch.Tensor) -> Iterator[None]:
    """While active, ``model``'s output head (LM head) reads only the hidden states at ``index``
    (flat indices into batch x sequence), so its logits are (N, V) instead of (B, T, V)."""
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings: set train.target_logits=false")

    def gather(module: Any, args: tuple) -> tuple:
        hidden = args[0]
        return (hidden.reshape(-1, hidden.size(-1)).index_select(0, index.to(hidden.device)), *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


class LogCallback(TrainerCallback):
    """Trainer logs go to the training module's logger (the default callback prints them)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if state.is_world_process_zero and logs:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in logs.items() if k != "total_flos"}
            logging.getLogger("saliency_distill.training.sft").info(
                "step %d/%d %s", state.global_step, state.max_steps, shown)


class BarCallback(ProgressCallback):
    """The progress bar without the log lines it would print under it."""

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


def callbacks(progress_bar: bool, save_minutes: float | None) -> list[Any]:
    out: list[Any] = [LogCallback()]
    if progress_bar:
        out.append(BarCallback())
    if save_minutes is not None:
        out.append(TimedCheckpoints(save_minutes))
    return out


__all__ = ["DistillTrainer", "PREDICT", "callbacks", "head_at", "logits_at_targets"]
