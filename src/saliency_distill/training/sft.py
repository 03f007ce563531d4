"""Supervised fine-tuning of a causal or seq2seq model on (prompt, target) pairs with HF Trainer.

The loss is on the target tokens only (see :mod:`.features`). Checkpoints go to
``output_dir/checkpoints`` and a killed job resumes from the last complete one; the final
model (LoRA merged into the weights) is written to ``output_dir/model`` through a temporary
folder and a rename, so a folder named ``model`` is always complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..config import config_hash, field, to_dict
from ..distributed import barrier
from ..errors import ConfigError, DataError
from ..io import temp_dir, write_json
from ..models import LoadedModel
from .features import encode_pair
from .losses import AVERAGES

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
RECORD = "training.json"  # written inside the model folder: what made it
METRICS = "train_metrics.json"

# Fields that change neither the trained weights nor what a checkpoint holds.
_BOOKKEEPING = frozenset(
    {"logging_steps", "save_steps", "save_minutes", "save_total_limit", "progress_bar", "keep_checkpoints",
     "report_to"}
)
# Fields a resumed run may change: training longer continues from the same checkpoints.
_RUN_LENGTH = frozenset({"epochs", "max_steps"})


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = field(3.0, "passes over the training pairs (used when max_steps is unset)")
    max_steps: int | None = field(None, "optimizer steps to run; unset: run for `epochs`")
    learning_rate: float = field(5e-5, "peak learning rate (AdamW, linear decay)")
    batch_size: int = field(8, "pairs per device per forward pass")
    grad_accum: int = field(1, "forward passes accumulated into one optimizer step")
    weight_decay: float = field(0.0, "AdamW weight decay")
    warmup_ratio: float = field(0.0, "share of the steps spent warming the learning rate up, in [0, 1)")
    seed: int = field(0, "seed of the data order, dropout and LoRA initialisation")
    bf16: bool = field(False, "bfloat16 autocast (on CPU too; on GPU it needs Ampere or newer)")
    lora: bool = field(False, "train LoRA adapters instead of every weight; merged into the saved model")
    lora_r: int = field(16, "LoRA rank")
    lora_alpha: int = field(32, "LoRA scaling numerator (scale = lora_alpha / lora_r)")
    lora_dropout: float = field(0.05, "dropout on the LoRA input, in [0, 1)")
    lora_targets: list[str] | None = field(
        None, "module names to adapt; unset: peft's default for the architecture, else q_proj, v_proj"
    )
    max_grad_norm: float = field(1.0, "clip the gradient norm to this (0: no clipping)")
    max_length: int | None = field(1024, "longest pair in tokens; a longer one is an error, not cut")
    share_prompt: bool = field(
        True, "causal multi-task: an example's sequences share one copy of their common prompt in one row"
    )
    pack_length: int | None = field(
        None, "causal: pack several examples into rows of at most this many tokens (no padding); unset: one a row"
    )
    target_logits: bool = field(True, "causal: run the LM head only where the next token is a target")
    group_by_length: bool = field(False, "batch pairs of similar length together (less padding)")
    report_to: list[str] = field([], "Trainer loggers, e.g. [tensorboard] (needs the tensorboard package)")
    logging_steps: int = field(10, "log the training loss every this many steps")
    save_steps: int | None = field(None, "also write a resumable checkpoint every this many steps")
    save_minutes: float | None = field(
        3.0, "write a resumable checkpoint when this many minutes passed since the last one (and at least 20x "
        "the time the last one took, so saving costs <= 5%); unset: no timed checkpoints"
    )
    save_total_limit: int | None = field(2, "keep at most this many checkpoints; unset: keep all")
    progress_bar: bool = field(True, "show a progress bar on stderr")
    keep_checkpoints: bool = field(
        False, "keep the resumable checkpoints after training finished (model + optimizer: GBs each)"
    )

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "learning_rate": self.learning_rate, "lora_alpha": self.lora_alpha,
                    "save_minutes": self.save_minutes}
        for key, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"config key '{key}': {value} must be > 0")
        at_least_one = {
            "max_steps": self.max_steps, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
            "lora_r": self.lora_r, "max_length": self.max_length, "logging_steps": self.logging_steps,
            "save_steps": self.save_steps, "save_total_limit": self.save_total_limit,
            "pack_length": self.pack_length,
        }
        for key, value in at_least_one.items():
            if value is not None and value < 1:
                raise ConfigError(f"config key '{key}': {value} must be >= 1")
        for key in ("weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 0")
        # warmup_ratio and lora_dropout are fractions; Trainer reads a warmup >= 1 as a step count.
        for key in ("warmup_ratio", "lora_dropout"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"config key '{key}': {value} is not in [0, 1)")
        if self.lora_targets is not None and (not self.lora_targets or not all(self.lora_targets)):
            raise ConfigError(f"config key 'lora_targets': {self.lora_targets!r} must list module names")


def identity(cfg: TrainConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that change what training produces (not logging, saving, bars)."""
    return {k: v for k, v in to_dict(cfg).items() if k not in _BOOKKEEPING}


def training_fingerprint(lm: LoadedModel, pairs: Sequence[tuple[str, str]], cfg: TrainConfig) -> str:
    """Hash of what determines a fine-tuned model: base model, training config and pairs."""
    return _fingerprint(lm, pairs, cfg, _BOOKKEEPING)


def _fingerprint(
    lm: LoadedModel, pairs: Sequence[tuple[str, str]], cfg: TrainConfig, exclude: frozenset[str],
    extra: dict[str, Any] | None = None,
) -> str:
    data = hashlib.sha256(json.dumps([list(p) for p in pairs], ensure_ascii=False).encode()).hexdigest()
    train = {k: v for k, v in to_dict(cfg).items() if k not in exclude}
    record = {"base": lm.name, "kind": lm.kind, "train": train, "pairs": data}
    if extra is not None:
        record["multitask"] = extra
    return config_hash(record)


def _length_limit(lm: LoadedModel, cfg: TrainConfig) -> int | None:
    """The shorter of ``cfg.max_length`` and the model's context: longer pairs are errors."""
    from ..models.tokens import context_length

    limits = [n for n in (cfg.max_length, context_length(lm)) if n is not None]
    return min(limits) if limits else None


def _group(features: list[dict[str, list[int]]], ids: Sequence[str] | None) -> list[dict[str, Any]]:
    """Training items: consecutive features with the same id form one item (one example).

    An item carries its first sequence's ``input_ids`` so that the Trainer's length-grouped
    sampler can read a length; the collator reads ``parts``.
    """
    items: list[dict[str, Any]] = []
    for i, feature in enumerate(features):
        if ids is not None and items and ids[i] == ids[i - 1]:
            items[-1]["parts"].append(feature)
        else:
            items.append({"input_ids": feature["input_ids"], "parts": [feature]})
    return items


def trained_fingerprint(model_dir: str | os.PathLike[str]) -> str | None:
    """Fingerprint recorded in a complete saved model folder; None if it is missing or incomplete."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        return None
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def encode_pairs(
    lm: LoadedModel, pairs: Sequence[tuple[str, str]], max_length: int | None, ids: Sequence[str] | None = None
) -> list[dict[str, list[int]]]:
    """Encode every pair; an error names the example (``ids[i]``, or the pair's index)."""
    features = []
    for i, (prompt, target) in enumerate(pairs):
        try:
            features.append(encode_pair(lm, prompt, target, max_length))
        except DataError as e:
            name = f"example {ids[i]}" if ids is not None else f"pair {i}"
            raise DataError(f"{name}: {e}") from None
    return features


def _resume_point(folder: Path, fingerprint: str) -> Path | None:
    """The checkpoint to resume from, refusing one made from another model, config or data."""
    record = folder / "run.json"
    resume = last_checkpoint(folder) if folder.is_dir() else None
    if resume is None:
        write_json(record, {"fingerprint": fingerprint})
        return None
    try:
        found = json.loads(record.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != fingerprint:
        raise ConfigError(
            f"{folder}: checkpoints come from another base model, training config or data "
            f"({found} != {fingerprint}); delete the folder or choose another output folder"
        )
    logger.info("resuming from %s", resume)
    return resume


def last_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint whose trainer state was written (Trainer writes that file last)."""
    found = []
    for path in folder.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return path
        except (OSError, ValueError):
            logger.warning("skipping incomplete checkpoint %s", path)
    return None


def _wrap_lora(lm: LoadedModel, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    targets = cfg.lora_targets
    if targets is None and getattr(lm.model.config, "model_type", None) not in PEFT_DEFAULTS:
        targets = ["q_proj", "v_proj"]  # peft has no default for this architecture
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(targets) if targets is not None else None,
        task_type=TaskType.SEQ_2_SEQ_LM if lm.is_seq2seq else TaskType.CAUSAL_LM,
    )
    try:
        return get_peft_model(lm.model, lora)
    except ValueError as e:
        raise ConfigError(f"config key 'lora_targets': {str(e).strip().splitlines()[0]}") from None


@contextlib.contextmanager
def _fine_tuning(lm: LoadedModel, cfg: TrainConfig) -> Iterator[Any]:
    """Yield the module to train; afterwards ``lm.model`` holds the trained weights (LoRA merged,
    or dropped if training failed) with its mode, device, requires_grad and use_cache as before."""
    model = lm.model
    was_training = model.training
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    device = next(model.parameters()).device
    use_cache = getattr(model.config, "use_cache", None)  # Trainer turns the KV cache off
    trainable = _wrap_lora(lm, cfg) if cfg.lora else model
    ok = False
    try:
        yield trainable
        ok = True
    finally:
        if cfg.lora:
            # peft swapped LoRA layers into lm.model's modules; fold them back (or drop them).
            lm.model = trainable.merge_and_unload() if ok else trainable.unload()
        for name, p in lm.model.named_parameters():
            p.requires_grad_(grads.get(name, p.requires_grad))
        if use_cache is not None:
            lm.model.config.use_cache = use_cache
        lm.model.to(device)
        lm.model.train(was_training)


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def _training_args(cfg: TrainConfig, checkpoints: Path) -> Any:
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
            seed=cfg.seed,
            data_seed=cfg.seed,
            bf16=cfg.bf16,
            use_cpu=not _has_accelerator(),
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
    from .packing import causal_batch, seq2seq_batch

    if seq2seq:
        return seq2seq_batch(items, pad_token_id)
    return causal_batch(items, pad_token_id, share_prompt=cfg.share_prompt, pack_length=cfg.pack_length)


def build_trainer(lm: LoadedModel, model: Any, items: list[dict[str, Any]], cfg: TrainConfig,
                  checkpoints: Path, alpha: float = 1.0, average: str = "token",
                  extra_callbacks: Sequence[Any] = ()) -> Any:
    """The :class:`.trainer.DistillTrainer` that fine-tunes ``model`` on training ``items``."""
    from transformers import PrinterCallback, ProgressCallback

    from .trainer import DistillTrainer, callbacks

    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0  # masked out; any id will do
    trainer = DistillTrainer(
        model=model,
        args=_training_args(cfg, checkpoints),
        data_collator=partial(_collate, pad_token_id=pad, seq2seq=lm.is_seq2seq, cfg=cfg),
        train_dataset=items,
        processing_class=tok,
        alpha=alpha,
        average=average,
        seq2seq=lm.is_seq2seq,
        target_logits=cfg.target_logits,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    for callback in [*callbacks(cfg.progress_bar, cfg.save_minutes), *extra_callbacks]:
        trainer.add_callback(callback)
    return trainer


def save_model_folder(lm: LoadedModel, folder: Path, record: dict[str, Any]) -> None:
    """Write model + tokenizer + record beside ``folder`` and rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(folder.parent, f".{folder.name}.", ".tmp")
    try:
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        write_json(tmp / RECORD, record)
        if folder.exists():
            # A directory cannot be replaced in one rename: move the old one aside first.
            old = temp_dir(folder.parent, f".{folder.name}.", ".old")
            os.replace(folder, old / folder.name)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _metrics(lm: LoadedModel, trainer: Any, output: Any, n_pairs: int, resumed: Path | None,
             wall: float) -> dict[str, Any]:
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "base_model": lm.name,
        "kind": lm.kind,
        "examples": n_pairs,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "epochs": trainer.state.epoch,
        "resumed_from": resumed.name if resumed is not None else None,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "train_loss_mean": output.training_loss,
        "examples_per_second": output.metrics.get("train_samples_per_second"),
        "wall_seconds": round(wall, 3),
        "device": str(trainer.args.device),
    }


def train_supervised(
    lm: LoadedModel,
    pairs: Sequence[tuple[str, str]],
    cfg: TrainConfig,
    output_dir: str | os.PathLike[str],
    ids: Sequence[str] | None = None,
    tasks: Sequence[int] | None = None,
    alpha: float = 0.5,
    average: str = "token",
    extra_callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Fine-tune ``lm.model`` in place on (prompt, target) pairs and save it to ``output_dir/model``.

    ``ids`` (aligned with ``pairs``) name the examples in error messages. With ``tasks``
    (PREDICT / EXPLAIN per pair) the loss is ``alpha * L_predict + (1 - alpha) * L_explain``
    (:func:`.losses.target_weights`, each task averaged per ``average``), and consecutive pairs
    with the same id form one example: they stay in the same batch and, for a causal model with
    ``cfg.share_prompt``, share one copy of their common prompt (:mod:`.packing`);
    ``cfg.batch_size`` counts examples. Resumes from the
    last complete checkpoint in ``output_dir/checkpoints``. Returns the metrics also written to
    ``output_dir/train_metrics.json``.
    """
    output_dir = Path(output_dir)
    if not pairs:
        raise DataError("no training pairs")
    if ids is not None and len(ids) != len(pairs):
        raise ValueError(f"{len(ids)} ids for {len(pairs)} pairs")
    if tasks is not None and len(tasks) != len(pairs):
        raise ValueError(f"{len(tasks)} tasks for {len(pairs)} pairs")
    features = encode_pairs(lm, pairs, _length_limit(lm, cfg), ids)
    if tasks is not None:
        for feature, task in zip(features, tasks):
            feature["task"] = [int(task)]
    items = _group(features, ids if tasks is not None else None)
    checkpoints = output_dir / CHECKPOINT_DIR
    if average not in AVERAGES:
        raise ConfigError(f"loss average {average!r}: choose from {', '.join(AVERAGES)}")
    if tasks is not None:
        extra: dict[str, Any] | None = {"tasks": list(tasks), "alpha": alpha, "average": average}
    else:
        extra = {"average": average} if average != "token" else None
    resume = _resume_point(checkpoints, _fingerprint(lm, pairs, cfg, _BOOKKEEPING | _RUN_LENGTH, extra))

    from transformers import set_seed

    set_seed(cfg.seed)  # before LoRA initialises its adapters
    with _fine_tuning(lm, cfg) as model:
        trainer = build_trainer(lm, model, items, cfg, checkpoints, alpha if tasks is not None else 1.0,
                                average, extra_callbacks)
        start = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        wall = time.perf_counter() - start
    metrics = _metrics(lm, trainer, output, len(items), resume, wall)
    metrics.update(fingerprint=_fingerprint(lm, pairs, cfg, _BOOKKEEPING, extra), config=to_dict(cfg),
                   sequences=len(pairs))
    metrics["world_size"] = trainer.args.world_size
    if trainer.is_world_process_zero():
        save_model_folder(lm, output_dir / MODEL_DIR, metrics)
        write_json(output_dir / METRICS, metrics)
        if not cfg.keep_checkpoints:  # the saved model is complete: checkpoints only cost disk now
            shutil.rmtree(checkpoints, ignore_errors=True)
    barrier()  # the other processes may read the saved model only once it is complete
    logger.info(
        "trained %s for %d steps: loss %s -> %s, %.1fs",
        lm.name, metrics["global_step"], metrics["loss_first"], metrics["loss_last"], wall,
    )
    return metrics
