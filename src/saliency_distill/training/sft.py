"""Supervised fine-tuning of a causal or seq2seq model on (prompt, target) pairs with HF Trainer.

The loss is on the target tokens only (see :mod:`.features` and :mod:`.losses`); the batch layout
is :mod:`.packing`, the Trainer :mod:`.trainer`, checkpoints and the saved model
:mod:`.checkpoints`, LoRA :mod:`.lora`. This module encodes the pairs, fingerprints the run and
runs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import config_hash, to_dict
from ..distributed import barrier
from ..errors import ConfigError, DataError
from ..io import write_json
from ..models import LoadedModel
from .checkpoints import (
    CHECKPOINT_DIR,
    METRICS,
    MODEL_DIR,
    RECORD,
    elapsed_at,
    finished_state,
    last_checkpoint,
    remove_checkpoints,
    resume_point,
    save_model_folder,
    trained_fingerprint,
)
from .config import _BOOKKEEPING, _RUN_LENGTH, TrainConfig, identity
from .features import encode_pair
from .losses import AVERAGES

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_DIR", "METRICS", "MODEL_DIR", "RECORD", "TrainConfig", "encode_pairs", "identity",
    "last_checkpoint", "save_model_folder", "train_supervised", "trained_fingerprint", "training_fingerprint",
]

def training_fingerprint(lm: LoadedModel, pairs: Sequence[tuple[str, str]], cfg: TrainConfig) -> str:
    """Hash of what determines a fine-tuned model: base model, training config and pairs."""
    return _fingerprint(lm, pairs, cfg, _BOOKKEEPING)


def _fingerprint(
    lm: LoadedModel, pairs: Sequence[tuple[str, str]], cfg: TrainConfig, exclude: frozenset[str],
    extra: dict[str, Any] | None = None,
) -> str:
    data = hashlib.sha256(json.dumps([list(p) for p in pairs], ensure_ascii=False).encode()).hexdigest()
    train = {k: v for k, v in identity(cfg).items() if k not in exclude}  # keys added later: left out at defaults
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
        # From the log history, which a resumed run continues: output.training_loss averages only
        # the steps run since the resume.
        "train_loss_mean": sum(losses) / len(losses) if losses else output.training_loss,
        "examples_per_second": output.metrics.get("train_samples_per_second"),
        "wall_seconds": round(wall, 3),
        "device": str(trainer.args.device),
    }


def _train(trainer: Any, resume: Path | None) -> Any:
    """``trainer.train``, resumed from ``resume``; a checkpoint written at the run's last step is
    loaded, not trained from: the Trainer (transformers 5.23) would skip the batches already
    trained and then run one more step before it looks at ``max_steps`` (found by
    benchmarks/faults.py: a run killed right after its last checkpoint came back one step longer)."""
    from transformers.trainer_utils import TrainOutput

    state = finished_state(resume) if resume is not None else None
    if state is not None:  # a longer run than the checkpoint's goes on training from it
        *_, planned = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())
        state = state if state.global_step >= planned else None
    if state is None:
        return trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    logger.info("%s was written at the last step (%d): loading it, nothing left to train", resume.name,
                state.global_step)
    trainer._load_from_checkpoint(str(resume))  # weights or LoRA adapters, as Trainer.train would
    trainer.state = state
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    return TrainOutput(state.global_step, sum(losses) / len(losses) if losses else float("nan"), {})


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
    scores: Sequence[float | None] | None = None,
    temperature: float = 1.0,
    teacher: Any = None,
    logit_kd: float = 0.0,
    views: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``lm.model`` in place on (prompt, target) pairs and save it to ``output_dir/model``.

    ``ids`` (aligned with ``pairs``) name the examples in error messages. With ``tasks``
    (PREDICT / EXPLAIN per pair) the loss is ``alpha * L_predict + (1 - alpha) * L_explain``
    (:func:`.losses.target_weights`, each task averaged per ``average``), and consecutive pairs
    with the same id form one example: they stay in the same batch and, for a causal model with
    ``cfg.share_prompt``, share one copy of their common prompt (:mod:`.packing`);
    ``cfg.batch_size`` counts examples. OPTION pairs carry the teacher's log p of that option in
    ``scores``: the loss is then ``alpha * L_predict + (1 - alpha) * KL`` between the teacher's and
    the student's distributions over each example's options (:func:`.losses.option_kl`, at
    ``temperature``). OPTION pairs with a ``views`` entry (0: the whole input, 1: words dropped)
    instead put ``alpha * L_predict + (1 - alpha) * KL`` between the student's own distributions
    on the two readings of each example, the whole one held fixed. With a ``teacher`` model that
    shares the tokenizer and ``logit_kd`` > 0, the loss adds ``logit_kd * sum_t w_t KL(teacher_t ||
    student_t)`` over the vocabulary at every target token (:func:`.losses.vocab_kl`). Resumes from
    the last complete checkpoint in ``output_dir/checkpoints``. Returns the metrics also written to
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
    soft = scores is not None and any(score is not None for score in scores)
    if soft:
        if tasks is None or len(scores) != len(pairs):  # type: ignore[arg-type]
            raise ValueError("scores need tasks and one entry per pair")
        if temperature <= 0:
            raise ConfigError(f"soft-label temperature {temperature} must be > 0")
        for feature, score in zip(features, scores):  # type: ignore[arg-type]
            if score is not None:
                feature["teacher_logprob"] = [float(score)]
    consistency = views is not None and any(view is not None for view in views)
    if consistency:
        if tasks is None or len(views) != len(pairs) or soft:  # type: ignore[arg-type]
            raise ValueError("views need tasks, one entry per pair, and no teacher scores")
        for feature, view in zip(features, views):  # type: ignore[arg-type]
            if view is not None:
                feature["view"] = [int(view)]
    items = _group(features, ids if tasks is not None else None)
    checkpoints = output_dir / CHECKPOINT_DIR
    if average not in AVERAGES:
        raise ConfigError(f"loss average {average!r}: choose from {', '.join(AVERAGES)}")
    if tasks is not None:
        extra: dict[str, Any] | None = {"tasks": list(tasks), "alpha": alpha, "average": average}
        if soft:
            extra.update(scores=list(scores), temperature=temperature)  # type: ignore[arg-type, union-attr]
        if consistency:
            extra.update(views=list(views), temperature=temperature)  # type: ignore[arg-type, union-attr]
    else:
        extra = {"average": average} if average != "token" else None
    if teacher is not None and logit_kd > 0:
        extra = {**(extra or {}), "logit_kd": logit_kd, "temperature": temperature,
                 "teacher": str(getattr(teacher, "name_or_path", type(teacher).__name__))}
    resume = resume_point(checkpoints, _fingerprint(lm, pairs, cfg, _BOOKKEEPING | _RUN_LENGTH, extra))

    from transformers import set_seed

    from .callbacks import ElapsedAtSaves
    from .lora import fine_tuning
    from .trainer import attention_switch, build_trainer

    set_seed(cfg.seed)  # before LoRA initialises its adapters
    with fine_tuning(lm, cfg) as model, attention_switch(lm.model, cfg.attention) as attention:
        trainer = build_trainer(lm, model, items, cfg, checkpoints, alpha if tasks is not None else 1.0,
                                average, extra_callbacks, temperature,
                                teacher if logit_kd > 0 else None, logit_kd, attention)
        clock = ElapsedAtSaves(elapsed_at(resume))  # the wall time of every sitting, summed
        trainer.add_callback(clock)
        output = _train(trainer, resume)
        wall = clock.elapsed()
    metrics = _metrics(lm, trainer, output, len(items), resume, wall)
    metrics.update(fingerprint=_fingerprint(lm, pairs, cfg, _BOOKKEEPING, extra), config=to_dict(cfg),
                   sequences=len(pairs))
    metrics["world_size"] = trainer.args.world_size
    if trainer.is_world_process_zero():
        save_model_folder(lm, output_dir / MODEL_DIR, metrics)
        write_json(output_dir / METRICS, metrics)
        if not cfg.keep_checkpoints:  # the saved model is complete: checkpoints only cost disk now
            remove_checkpoints(checkpoints)
    barrier()  # the other processes may read the saved model only once it is complete
    logger.debug(
        "trained %s for %d steps: loss %s -> %s, %.1fs",
        lm.name, metrics["global_step"], metrics["loss_first"], metrics["loss_last"], wall,
    )
    return metrics
