"""The HF Trainer with the distillation loss (its callbacks: :mod:`.callbacks`).

:class:`DistillTrainer` trains every mode with one loss, :func:`.losses.weighted_loss` at the
targets laid out by :mod:`.packing`. It weighs the targets of each optimizer step over all its
micro-batches (:func:`.losses.target_weights`), so the loss it returns is already scaled for
gradient accumulation, and it runs a causal model's LM head only at the target positions.
:func:`build_trainer` maps a :class:`.config.TrainConfig` to it. This module imports
transformers; :mod:`.sft` imports it when training starts.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import ProgressCallback, Trainer

from ..errors import ConfigError
from ..models import LoadedModel, native_dtype
from ..models.loading import SLOW_DTYPE
from .callbacks import callbacks
from .config import EAGER_UP_TO, TrainConfig, resolve_bf16
from .losses import option_kl, sequence_logprobs, target_weights, vocab_kl, weighted_loss
from .packing import causal_batch, seq2seq_batch

logger = logging.getLogger(__name__)

_TARGET_KEYS = ("target_index", "target_ids", "target_task", "target_seq", "target_weight", "seq_item",
                "seq_teacher", "seq_view", "item_weight")


class DistillTrainer(Trainer):
    """Trainer whose loss is ``alpha * L_predict + (1 - alpha) * L_explain`` over the targets.

    Batches come from :func:`.packing.causal_batch` or :func:`.packing.seq2seq_batch`. A batch
    of one task is plain fine-tuning: with ``average="token"`` its loss is the model's own
    (the mean over the step's target tokens).
    """

    def __init__(self, *args: Any, alpha: float = 1.0, average: str = "token", seq2seq: bool = False,
                 target_logits: bool = True, temperature: float = 1.0, teacher: Any = None,
                 logit_kd: float = 0.0, attention: AttentionSwitch | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attention = attention
        self.alpha, self.average, self.seq2seq, self.target_logits = alpha, average, seq2seq, target_logits
        self.temperature, self.logit_kd = temperature, logit_kd
        self.teacher = teacher.to(self.args.device).eval() if teacher is not None else None
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
                                            bare=self.accelerator.unwrap_model(model), attention=self.attention)
        loss = weighted_loss(logits, inputs["target_ids"], inputs["target_weight"])
        if "seq_teacher" in inputs:  # soft labels: the options' distribution against the teacher's
            soft = torch.isfinite(inputs["seq_teacher"])
            seq_logp = sequence_logprobs(logits, inputs["target_ids"], inputs["target_seq"], soft.numel())
            kl = option_kl(seq_logp[soft.to(seq_logp.device)], inputs["seq_item"][soft], inputs["seq_teacher"][soft],
                           inputs["item_weight"], self.temperature)
            loss = self.alpha * loss + (1.0 - self.alpha) * kl
        if "seq_view" in inputs:  # consistency: the options' distribution with words dropped against the whole input's
            view = inputs["seq_view"]
            seq_logp = sequence_logprobs(logits, inputs["target_ids"], inputs["target_seq"], view.numel())
            whole, dropped = (view == 0).to(seq_logp.device), (view == 1).to(seq_logp.device)
            kl = option_kl(seq_logp[dropped], inputs["seq_item"][view == 1], seq_logp[whole].detach(),
                           inputs["item_weight"], self.temperature)
            loss = self.alpha * loss + (1.0 - self.alpha) * kl
        if self.teacher is not None and self.logit_kd > 0:  # the teacher's next-token distributions
            with torch.no_grad():
                teacher_logits, _ = logits_at_targets(self.teacher, inputs, self.seq2seq, self.target_logits)
            loss = loss + self.logit_kd * vocab_kl(logits, teacher_logits, inputs["target_weight"], self.temperature)
        return (loss, outputs) if return_outputs else loss


def logits_at_targets(model: Any, batch: dict[str, Any], seq2seq: bool = False, only_targets: bool = True,
                      bare: Any = None, attention: AttentionSwitch | None = None) -> tuple[torch.Tensor, Any]:
    """The logits (N, V) that predict a batch's N targets, and the model's outputs.

    ``batch`` is laid out by :mod:`.packing`; ``model`` may be wrapped (DDP), ``bare`` is the
    unwrapped model (default: ``model``). With ``only_targets`` a causal model's LM head runs
    at the target positions alone (:func:`head_at`); otherwise on every position. ``attention``
    picks the attention kernel for the batch's length.
    """
    bare = model if bare is None else bare
    index = batch["target_index"]
    inputs = {k: v for k, v in batch.items() if k not in _TARGET_KEYS}
    if seq2seq:
        labels = inputs.pop("labels")
        inputs["decoder_input_ids"] = bare.prepare_decoder_input_ids_from_labels(labels=labels)
        outputs = model(**inputs)
        return outputs.logits.reshape(-1, outputs.logits.size(-1)).index_select(0, index), outputs
    if attention is not None:
        attention.set_for(inputs["input_ids"].size(1))
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
    # Soft labels, consistency: every example with such options weighs 1 / (such examples in the step).
    scored = [torch.zeros(0, dtype=torch.bool) if "seq_item" not in b else
              torch.zeros(int(b["seq_item"].max()) + 1, dtype=torch.bool, device=b["seq_item"].device).index_fill(
                  0, b["seq_item"][_kl_sequences(b)], True) for b in batches]
    total = sum(int(s.sum()) for s in scored)
    for batch, s in zip(batches, scored):
        if "seq_item" in batch:
            batch["item_weight"] = s.float() / max(total, 1)


def _kl_sequences(batch: dict[str, Any]) -> torch.Tensor:
    """The sequences of a batch that a KL term reads: options with a teacher score, or the second
    reading's options (consistency)."""
    if "seq_teacher" in batch:
        return torch.isfinite(batch["seq_teacher"])
    return batch["seq_view"] == 1


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


class AttentionSwitch:
    """Picks a causal model's attention kernel for each batch by its length: ``choice`` ``auto`` is
    eager on CPU for rows of at most :data:`.config.EAGER_UP_TO` tokens (faster there, and its
    attention matrices stay small) and the kernel the model was loaded with otherwise; ``model``
    keeps that one; ``eager`` / ``sdpa`` always use that kernel."""

    def __init__(self, model: Any, choice: str) -> None:
        self.model, self.choice = model, choice
        self.loaded = getattr(model.config, "_attn_implementation", None)
        self.cpu = next(model.parameters()).device.type == "cpu"

    def kernel(self, length: int) -> str | None:
        """The kernel for rows ``length`` tokens long (None: the model has no choice to make)."""
        if self.loaded is None or getattr(self.model.config, "is_encoder_decoder", False):
            return None
        if self.choice == "auto":
            return "eager" if self.cpu and length <= EAGER_UP_TO else self.loaded
        return self.loaded if self.choice == "model" else self.choice

    def use(self, kernel: str | None) -> None:
        if kernel is not None and kernel != self.model.config._attn_implementation:
            self.model.set_attn_implementation(kernel)

    def set_for(self, length: int) -> None:
        self.use(self.kernel(length))


@contextlib.contextmanager
def attention_switch(model: Any, choice: str) -> Iterator[AttentionSwitch]:
    """An :class:`AttentionSwitch` for ``model``; afterwards the model attends as it was loaded."""
    switch = AttentionSwitch(model, choice)
    try:
        yield switch
    finally:
        switch.use(switch.loaded)


def _training_args(cfg: TrainConfig, checkpoints: Path, use_cpu: bool) -> Any:
    from transformers import TrainingArguments

    try:
        return TrainingArguments(
            output_dir=str(checkpoints),
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
            learning_rate=cfg.learning_rate,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm,
            warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
            seed=cfg.seed, data_seed=cfg.seed,
            optim=cfg.optim,
            bf16=cfg.bf16,
            use_cpu=use_cpu,
            train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
            logging_steps=cfg.logging_steps,
            logging_first_step=True,
            # Timed checkpoints (TimedCheckpoints) are asked for by a callback, whatever the strategy.
            save_strategy="steps" if cfg.save_steps is not None else "no",
            save_steps=cfg.save_steps if cfg.save_steps is not None else 500,
            save_total_limit=cfg.save_total_limit,
            report_to=list(cfg.report_to),
            disable_tqdm=not cfg.progress_bar,
            remove_unused_columns=False,  # features hold exactly the model's inputs
            label_names=["labels"],
        )
    except ValueError as e:
        raise ConfigError(f"training arguments: {str(e).strip().splitlines()[0]}") from None


def _collate(items: Sequence[Mapping[str, Any]], pad_token_id: int, seq2seq: bool, cfg: TrainConfig
             ) -> dict[str, torch.Tensor]:
    if seq2seq:
        return seq2seq_batch(items, pad_token_id)
    return causal_batch(items, pad_token_id, share_prompt=cfg.share_prompt, pack_length=cfg.pack_length)


def build_trainer(lm: LoadedModel, model: Any, items: list[dict[str, Any]], cfg: TrainConfig,
                  checkpoints: Path, alpha: float = 1.0, average: str = "token",
                  extra_callbacks: Sequence[Any] = (), temperature: float = 1.0, teacher: Any = None,
                  logit_kd: float = 0.0, attention: AttentionSwitch | None = None) -> Any:
    """The :class:`.trainer.DistillTrainer` that fine-tunes ``model`` on training ``items``."""
    from transformers import PrinterCallback

    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0  # masked out; any id will do
    device = str(next(model.parameters()).device)
    cfg = resolve_bf16(cfg, device)  # a TrainConfig made in code may still say auto
    if cfg.bf16 and not native_dtype("bfloat16", device):
        logger.warning("training %s with bf16 autocast: bfloat16 is emulated on this %s, several times slower "
                       "than float32 (%s); set bf16 to false here", lm.name, device, SLOW_DTYPE)
    trainer = DistillTrainer(
        model=model,
        # where the model was loaded (its config's `device`) decides: a student kept on the CPU stays there
        args=_training_args(cfg, checkpoints, use_cpu=next(model.parameters()).device.type == "cpu"),
        data_collator=partial(_collate, pad_token_id=pad, seq2seq=lm.is_seq2seq, cfg=cfg),
        train_dataset=items,
        processing_class=tok,
        alpha=alpha,
        average=average,
        seq2seq=lm.is_seq2seq,
        target_logits=cfg.target_logits,
        temperature=temperature,
        teacher=teacher,
        logit_kd=logit_kd,
        attention=attention,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    for callback in [*callbacks(cfg.progress_bar, cfg.save_minutes), *extra_callbacks]:
        trainer.add_callback(callback)
    return trainer


__all__ = ["AttentionSwitch", "DistillTrainer", "attention_switch", "build_trainer", "callbacks", "head_at",
           "logits_at_targets"]
