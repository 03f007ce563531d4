"""The student stage: train one (mode, seed) and evaluate it on the test split.

Outputs go to ``<run_dir>/students/<mode>/seed<seed>/``: ``train_metrics.json``,
``predictions.jsonl``, ``metrics.json`` (evaluation) and ``result.json`` (written last: it
marks the run complete). The trained weights are deleted afterwards unless
``student.keep_models`` is set, since a 135M-parameter student is half a gigabyte per run; kept
weights (``model/``) come with ``saliency_distill.json``, the prompt format they were trained
with (:mod:`.record`), which ``saliency-distill predict`` and ``export`` read.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import config_hash, field, to_dict
from ..data import Example, TaskConfig, get_task
from ..distributed import barrier, is_main
from ..errors import ConfigError
from ..evaluation import EvalConfig, evaluate_student, write_predictions
from ..evaluation.evaluate import identity as eval_identity
from ..io import write_json
from ..models import ModelConfig, load_model
from ..run_dir import RunDir, reuse_or_refuse
from ..training.checkpoints import remove_checkpoints
from ..training.config import resolve_bf16
from ..training.losses import AVERAGES
from ..training.sft import CHECKPOINT_DIR, MODEL_DIR, TrainConfig, save_model_folder, train_supervised
from ..training.sft import identity as train_identity
from .early_stop import EarlyStopConfig
from .modes import DEFAULT_MODES, FORMATS, MODES, build_pairs, check_mode, templates
from .pool import check_min_confidence, training_examples
from .record import RECORD_FILE, run_provenance, student_record, write_record

logger = logging.getLogger(__name__)
VALIDATION_EXAMPLES = 200  # a student's validation accuracy (which student to use) reads at most these

__all__ = ["EarlyStopConfig", "StudentConfig", "run_dir_of", "run_provenance", "train_and_evaluate"]


@dataclass(frozen=True)
class StudentConfig:
    model: ModelConfig = field(ModelConfig(name="smollm2-135m-instruct"), "the student model")
    modes: list[str] = field(list(DEFAULT_MODES), "training modes to compare: " + ", ".join(MODES))
    seeds: list[int] = field([0], "seeds; every mode is trained once per seed")
    alpha: float = field(
        0.9, "multi-task weight: alpha * label loss + (1 - alpha) * rationale loss (0.9: measured, see "
        "docs/pipeline.md)"
    )
    alpha_by_mode: dict[str, float] = field(
        {}, "alpha of some modes, overriding student.alpha for them, e.g. {saliency: 0.9, llm-rationale: 0.5} "
        "(tune chooses it per rationale mode)"
    )
    format: str = field(
        "auto", "where the task tag goes: suffix ('x\\npredict:'), prefix ('predict: x', as in Distilling "
        "Step-by-Step) or auto (suffix for causal students, prefix for encoder-decoder ones)"
    )
    predict_tag: str = field("predict", "tag of the label task (the only one used at test time)")
    explain_tag: str = field("explain", "tag of the rationale task")
    loss_average: str = field(
        "token", "how each task's loss averages its targets: token (the mean over the step's tokens, the usual "
        "fine-tuning loss) or sequence (each sequence's mean, then the mean over sequences)"
    )
    temperature: float = field(
        1.0, "temperature of the distillation terms: the soft-label mode's distributions over the options and "
        "logit_kd's over the vocabulary"
    )
    logit_kd: float = field(
        0.0, "weight of a logit-distillation term over the vocabulary at every target token, added to any mode's "
        "loss (the teacher and the student must share a tokenizer, e.g. two Qwen2.5 models); 0 turns it off"
    )
    train: TrainConfig = field(TrainConfig(epochs=1.0, learning_rate=1e-4, bf16=True), "student training")
    eval: EvalConfig = field(EvalConfig(), "student evaluation on the test split")
    early_stopping: EarlyStopConfig = field(EarlyStopConfig(), "keep the best weights on the validation split")
    require_rationales: bool = field(
        False, "llm-/human-rationale modes: an example without a dataset rationale is an error (default: it "
        "trains on the label only, and a warning counts them)"
    )
    keep_models: bool = field(False, "keep each trained student's weights (about 0.5 GB each)")
    pool_min_confidence: float | str | None = field(
        None, "pool modes: leave out pool inputs whose teacher probability (of its answer) is under this, or "
        "auto: the threshold under which the teacher's validation answers are right more often than wrong by "
        "the largest margin (student/pool.py); unset keeps every pool input")
    pool_keep: str | None = field(
        None, "pool modes with pool_min_confidence: unset keeps the inputs the teacher is sure of; random keeps "
        "as many, drawn at random per seed (the threshold's control)")
    mask_fraction: float = field(
        0.3, "consistency modes: the share of an input's content words that its second reading drops (the "
        "least salient ones, or random ones for the control); not yet chosen by measurement")

    def __post_init__(self) -> None:
        for mode in self.modes:
            check_mode(mode)
        if not self.modes:
            raise ConfigError("config key 'student.modes': at least one mode is needed")
        if not self.seeds:
            raise ConfigError("config key 'student.seeds': at least one seed is needed")
        object.__setattr__(self, "train", resolve_bf16(self.train, self.model.device))  # bf16: auto
        if self.format not in FORMATS:
            raise ConfigError(f"config key 'student.format': unknown format {self.format!r} "
                              f"(choose from: {', '.join(FORMATS)})")
        if self.loss_average not in AVERAGES:
            raise ConfigError(f"config key 'student.loss_average': unknown average {self.loss_average!r} "
                              f"(choose from: {', '.join(AVERAGES)})")
        for key in ("predict_tag", "explain_tag"):
            if not getattr(self, key).strip():
                raise ConfigError(f"config key 'student.{key}': a tag cannot be empty")
        if not self.temperature > 0:
            raise ConfigError(f"config key 'student.temperature': {self.temperature} must be > 0")
        if not self.logit_kd >= 0:
            raise ConfigError(f"config key 'student.logit_kd': {self.logit_kd} must be >= 0")
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"config key 'student.alpha': {self.alpha} is not in (0, 1]")
        for mode, alpha in self.alpha_by_mode.items():
            if mode not in MODES:
                raise ConfigError(f"config key 'student.alpha_by_mode': unknown training mode {mode!r} "
                                  f"(choose from: {', '.join(MODES)})")
            if not 0.0 < alpha <= 1.0:
                raise ConfigError(f"config key 'student.alpha_by_mode.{mode}': {alpha} is not in (0, 1]")
        check_min_confidence(self.pool_min_confidence, self.pool_keep)
        if not 0.0 < self.mask_fraction < 1.0:
            raise ConfigError(f"config key 'student.mask_fraction': {self.mask_fraction} is not in (0, 1)")
        if self.train.seed != 0:  # each (mode, seed) run sets it from student.seeds
            raise ConfigError("config key 'student.train.seed': the student's seeds are student.seeds "
                              f"(got {self.train.seed}); leave student.train.seed unset")

    def for_mode(self, mode: str) -> StudentConfig:
        """The config one run of ``mode`` trains with: its alpha from ``alpha_by_mode`` when set there."""
        if not self.alpha_by_mode:
            return self
        return dataclasses.replace(self, alpha=self.alpha_by_mode.get(mode, self.alpha), alpha_by_mode={})


def _stopper(lm: Any, task: Any, task_cfg: TaskConfig, cfg: StudentConfig, splits: Mapping[str, list[Example]],
             template: str, folder: Path) -> Any:
    """The early-stopping callback: accuracy of the model being trained on the validation split."""
    from .early_stop import ValidationStopper

    examples = splits.get("validation") or []
    if not examples:
        raise ConfigError("config key 'student.early_stopping.enabled': the task has no validation examples "
                          "(raise task.max_validation or task.validation_fraction)")
    stop = cfg.early_stopping
    examples = examples[: stop.max_examples] if stop.max_examples is not None else examples
    # the kept weights are chosen by greedy accuracy, so the choice ranking is skipped (measured on
    # e-SNLI with SmolLM2, 96 examples: it is a third to a half of an evaluation's time)
    eval_cfg = dataclasses.replace(cfg.eval, max_examples=None, choice_scoring=False)

    def accuracy() -> float:
        _, metrics = evaluate_student(lm, task, task_cfg, examples, eval_cfg, template)
        return metrics["accuracy"] or 0.0

    return ValidationStopper(accuracy, stop.evaluations, stop.patience, folder / "validation", stop.min_fraction)


def validation_accuracy(lm: Any, task: Any, task_cfg: TaskConfig, cfg: StudentConfig,
                        splits: Mapping[str, list[Example]], template: str, validation: dict | None) -> float | None:
    """The trained student's greedy accuracy on (at most 200 of) the validation split: what picks
    the best student to use, since the test split only reports. Early stopping measured it already."""
    if validation is not None:
        return ((validation.get("best") or {}).get("accuracy"))
    examples = (splits.get("validation") or [])[:VALIDATION_EXAMPLES]
    if not examples:
        return None
    eval_cfg = dataclasses.replace(cfg.eval, max_examples=None, choice_scoring=False)
    return evaluate_student(lm, task, task_cfg, examples, eval_cfg, template)[1]["accuracy"]


def run_dir_of(run_dir: str | Path, mode: str, seed: int) -> Path:
    return RunDir(run_dir).student(mode, seed)


def _kd_teacher(lm: Any, teacher: ModelConfig | None, cfg: StudentConfig) -> Any:
    """The teacher's model for logit distillation (None when it is off), checked to share the
    student's vocabulary."""
    if not cfg.logit_kd:
        return None
    if teacher is None:
        raise ConfigError("config key 'student.logit_kd': logit distillation needs the teacher model")
    t = load_model(teacher)
    same = t.tokenizer.get_vocab() == lm.tokenizer.get_vocab()
    sizes = [m.get_output_embeddings().weight.shape[0] for m in (t.model, lm.model)]
    if not same or sizes[0] != sizes[1]:
        raise ConfigError(f"config key 'student.logit_kd': teacher {teacher.name} and student {cfg.model.name} do "
                          f"not share a vocabulary (output sizes {sizes[0]} and {sizes[1]}); logit distillation needs "
                          "one (the soft-label mode does not)")
    return t.model.eval()


def train_and_evaluate(
    task_cfg: TaskConfig,
    cfg: StudentConfig,
    mode: str,
    seed: int,
    splits: Mapping[str, list[Example]],
    run_dir: str | Path,
    teacher_answers: Mapping[str, Mapping[str, Any]] | None = None,
    rationales: Mapping[str, str] | None = None,
    identity: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    kd_teacher: ModelConfig | None = None,
    provenance: Mapping[str, Any] | None = None,
    min_confidence: float = 0.0,
    masked: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Train the student in ``mode`` with ``seed``, evaluate it, and return its metrics.

    ``identity`` (e.g. the teacher's and the rationale store's config hashes) is part of the
    run's hash: a finished run is reused only when everything that made it is unchanged.
    ``kd_teacher`` is the teacher model that ``cfg.logit_kd`` distils from. ``min_confidence``: a
    pool mode's threshold on the teacher's probability (``student.pool_min_confidence`` resolved);
    ``masked``: a consistency mode's second reading of each input. ``provenance`` (the
    run config's hash, the teacher, attribution and rationale sections) goes into the record kept
    with the weights; it is not part of the hash.
    """
    task = get_task(task_cfg.name)
    cfg = cfg.for_mode(mode)  # this mode's alpha; a run is the same whichever way its alpha was given
    folder = run_dir_of(run_dir, mode, seed)
    train_cfg = dataclasses.replace(cfg.train, seed=seed)
    student = {**to_dict(cfg), "train": train_identity(cfg.train), "eval": eval_identity(cfg.eval), "keep_models": None}
    student.pop("alpha_by_mode")
    # Keys that change nothing here stay out (and runs made before they existed stay valid).
    if not cfg.early_stopping.enabled or not cfg.early_stopping.min_fraction:  # 0: how runs made before it stopped
        student["early_stopping"].pop("min_fraction")
    if not MODES[mode].pool:
        for key in ("pool_min_confidence", "pool_keep"):
            student.pop(key, None)
    else:  # the threshold the run trains with (auto: as chosen)
        student["pool_min_confidence"] = min_confidence
    if not MODES[mode].consistency:
        student.pop("mask_fraction")
    if not cfg.logit_kd:
        student.pop("logit_kd")
        if not (MODES[mode].soft or MODES[mode].consistency):
            student.pop("temperature")
    def hashed(student: dict[str, Any]) -> str:
        return config_hash({"task": to_dict(task_cfg), "student": student, "mode": mode, "seed": seed,
                            "identity": dict(identity or {})})

    # The lists of modes and seeds say which runs to make, not how this one is made: adding a seed
    # or a mode keeps the finished runs. alpha weighs a second loss: a mode with one (standard,
    # teacher-label) is the same run at any alpha.
    unused = () if MODES[mode].explain or MODES[mode].soft or MODES[mode].consistency else ("alpha",)
    digest = hashed({k: v for k, v in student.items() if k not in ("modes", "seeds", *unused)})
    # Runs hashed with those keys (before 2026-11-27) are still reused: with this config's lists,
    # and for a single-loss mode also at alpha 0.5, the default then.
    legacy = [hashed(student)] + ([hashed({**student, "alpha": 0.5})] if unused else [])
    metrics_path = folder / "result.json"
    done = reuse_or_refuse(metrics_path, digest, f"student run {mode} seed {seed}", overwrite, remove=folder,
                           also=tuple(legacy))
    # A finished run whose weights were not kept is trained again when they are now wanted.
    retrain = done is not None and cfg.keep_models and not (folder / MODEL_DIR / RECORD_FILE).is_file()
    barrier()  # every process has read the folder before the main one may remove it
    if retrain:
        logger.info("student %s seed %d: training again to keep its weights (student.keep_models)", mode, seed)
        if is_main():
            shutil.rmtree(folder)
        barrier()
        done = None
    if done is not None:
        logger.info("reusing student %s seed %d in %s", mode, seed, folder)
        return done
    lm = load_model(cfg.model)
    predict_template, explain_template = templates(cfg.format, lm.is_seq2seq, cfg.predict_tag, cfg.explain_tag)
    examples = training_examples(mode, splits, cfg.pool_keep, teacher_answers, min_confidence, seed)
    threshold = 0.0 if cfg.pool_keep == "random" else min_confidence  # a random draw kept as many already
    pairs = build_pairs(mode, task, task_cfg, examples, teacher_answers, rationales,
                        predict_template, explain_template, cfg.require_rationales, threshold, masked)
    pool_used = len(set(pairs.ids)) - len(splits["train"]) if MODES[mode].pool else 0
    logger.debug("training student %s, mode %s, seed %d on %d sequences", cfg.model.name, mode, seed,
                 len(pairs.prompts))
    callbacks = []
    if cfg.early_stopping.enabled:
        callbacks.append(_stopper(lm, task, task_cfg, cfg, splits, predict_template, folder))
    train_metrics = train_supervised(
        lm, list(zip(pairs.prompts, pairs.targets)), train_cfg, folder, ids=pairs.ids,
        tasks=pairs.tasks if pairs.multitask else None, alpha=cfg.alpha, average=cfg.loss_average,
        extra_callbacks=callbacks, scores=pairs.scores if pairs.soft else None, temperature=cfg.temperature,
        teacher=_kd_teacher(lm, kd_teacher, cfg), logit_kd=cfg.logit_kd,
        views=pairs.views if pairs.consistency else None,
    )
    validation = None
    if cfg.early_stopping.enabled:
        from .early_stop import load_best

        validation = load_best(lm.model, folder / "validation")
        if validation is not None and is_main() and cfg.keep_models:
            save_model_folder(lm, folder / MODEL_DIR, {**train_metrics, "validation": validation})
    if is_main() and cfg.keep_models:  # the saved weights' prompt format, for predict and export
        best = ((validation or {}).get("best") or {}).get("step")  # early stopping: the step whose weights these are
        trained = {"steps": train_metrics.get("global_step"), "best_validation_step": best}
        kept = student_record(task_cfg, cfg, mode, seed, lm.kind, (predict_template, explain_template),
                              splits["train"], digest, provenance, trained, pool_used)
        write_record(folder / MODEL_DIR, kept)
    if not is_main():
        barrier()  # training ran data-parallel; the main process evaluates and writes
        return json.loads(metrics_path.read_text())
    start = time.perf_counter()
    rows, metrics = evaluate_student(lm, task, task_cfg, splits["test"], cfg.eval, predict_template,
                                     progress=cfg.train.progress_bar)
    write_predictions(folder, rows, metrics, overwrite=True)  # result.json, not this, marks completion
    record = {
        "config_hash": digest, "mode": mode, "seed": seed, "model": cfg.model.name,
        **{k: metrics.get(k) for k in ("accuracy", "ranked_accuracy", "n", "bf16")},
        "train_examples": len(splits["train"]), "pool_examples": len(examples) - len(splits["train"]),
        "pool_used": pool_used,
        **({"pool_min_confidence": min_confidence, "pool_keep": cfg.pool_keep} if MODES[mode].pool else {}),
        "train_sequences": len(pairs.prompts),
        "train_steps": train_metrics.get("global_step"),
        "train_seconds": train_metrics.get("wall_seconds"), "eval_seconds": round(time.perf_counter() - start, 3),
        "train_examples_per_s": train_metrics.get("examples_per_second"),
        "loss_first": train_metrics.get("loss_first"), "loss_last": train_metrics.get("loss_last"),
    }
    if validation is not None:
        record["validation"] = validation  # history and the best step, whose weights were tested
    record["validation_accuracy"] = validation_accuracy(lm, task, task_cfg, cfg, splits, predict_template, validation)
    if not cfg.keep_models:
        shutil.rmtree(folder / MODEL_DIR, ignore_errors=True)
        remove_checkpoints(folder / CHECKPOINT_DIR)
        (folder / "validation" / "best.safetensors").unlink(missing_ok=True)
    write_json(metrics_path, record)
    barrier()
    return record
