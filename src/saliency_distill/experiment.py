"""The experiment: one config naming task, teacher and student, and the stages that use them.

Each stage reads and writes files in ``run_dir`` so it can be re-run alone; later stages reuse
what earlier ones left (prepared data, converted models).
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import config_hash, field, to_dict
from .data import TaskConfig, get_task, prepare
from .errors import ConfigError, DataError
from .io import atomic_open, write_json
from .models import ModelConfig, load_model
from .teacher import score_choices

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentConfig:
    run_dir: str = field("runs/demo", "folder for every stage's inputs and outputs")
    task: TaskConfig = field(TaskConfig(), "the task and its data")
    teacher: ModelConfig = field(ModelConfig(name="qwen2.5-coder-0.5b-instruct"), "the teacher model")
    student: ModelConfig = field(ModelConfig(name="smollm2-135m-instruct"), "the student model")
    preview: int = field(16, "test examples answered zero-shot by each model in the preview stage")
    batch_size: int = field(8, "batch size for scoring")

    def __post_init__(self) -> None:
        if self.preview < 0:
            raise ConfigError(f"config key 'preview': {self.preview} must be >= 0")
        if self.batch_size < 1:
            raise ConfigError(f"config key 'batch_size': {self.batch_size} must be >= 1")


def save_resolved(cfg: ExperimentConfig) -> Path:
    path = Path(cfg.run_dir) / "config.yaml"
    with atomic_open(path) as f:
        f.write(f"# resolved config, hash {config_hash(cfg)}\n")
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False, allow_unicode=True)
    return path


def preview(cfg: ExperimentConfig) -> dict[str, Any]:
    """Zero-shot answers of teacher and student on the first ``cfg.preview`` test examples."""
    task = get_task(cfg.task.name)
    if task.answer_type(cfg.task) != "choice":
        raise DataError(f"task '{cfg.task.name}' is free-form; the preview scores choice tasks only")
    splits = prepare(cfg.task, cfg.run_dir)
    examples = splits["test"][: cfg.preview]
    prompts = [task.render(ex, cfg.task).text for ex in examples]
    out: dict[str, Any] = {"n": len(examples), "models": {}}
    for role, mcfg in (("teacher", cfg.teacher), ("student", cfg.student)):
        lm = load_model(mcfg)
        scores = score_choices(lm, prompts, [ex.choices or () for ex in examples], cfg.batch_size)
        row: dict[str, Any] = {"model": mcfg.name, "parameters": lm.model.num_parameters()}
        for rule, normalise in (("sum", False), ("mean", True)):
            picks = scores.best(normalise)
            answers = [ex.choices[p] for ex, p in zip(examples, picks)]  # type: ignore[index]
            row[f"accuracy_{rule}"] = sum(a == ex.label for a, ex in zip(answers, examples)) / max(len(examples), 1)
            row[f"answers_{rule}"] = answers
        out["models"][role] = row
        del lm
    write_json(Path(cfg.run_dir) / "preview.json", out)
    return out


def environment() -> dict[str, str]:
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
    }
