"""The preview stage: zero-shot answers of teacher and student before anything is trained, and
the versions a run's record names."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from ..data import get_task
from ..errors import DataError
from ..experiment import ExperimentConfig, prepare_stage
from ..io import write_json
from ..models import load_model
from ..teacher import score_choices


def preview(cfg: ExperimentConfig) -> dict[str, Any]:
    """Zero-shot answers of teacher and student on the first ``cfg.preview`` test examples."""
    task = get_task(cfg.task.name)
    if task.answer_type(cfg.task) != "choice":
        raise DataError(f"task '{cfg.task.name}' is free-form; the preview scores choice tasks only")
    splits = prepare_stage(cfg)
    examples = splits["test"][: cfg.preview]
    prompts = [task.render(ex, cfg.task).text for ex in examples]
    out: dict[str, Any] = {"n": len(examples), "models": {}}
    for role, mcfg in (("teacher", cfg.teacher.model), ("student", cfg.student.model)):
        lm = load_model(mcfg)
        scores = score_choices(lm, prompts, [ex.choices or () for ex in examples], cfg.teacher.batch_size)
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
