"""A run folder carried to another machine keeps the teacher's answers but not its fine-tuned
weights: the stages that need the weights again (attribution, faithfulness, logit distillation)
get them from :func:`loadable_teacher`, which fine-tunes the teacher again when they are missing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..data import Example, TaskConfig
from ..distributed import is_main
from ..errors import ConfigError
from ..io import write_json
from ..models import ModelConfig, load_model, release
from ..run_dir import RunDir
from .answer import TeacherConfig, answer_examples, make_prompter, read_answers

logger = logging.getLogger(__name__)


def remake_finetuned(task_cfg: TaskConfig, cfg: TeacherConfig, splits: dict[str, list[Example]],
                     run_dir: str | Path, metrics: dict[str, Any], check: int = 40) -> None:
    """Fine-tune the teacher again where its answers are kept but its weights are not (a run folder
    carried to another machine without them): the same base model, config and pairs, so the same
    training. The remade model answers the first ``check`` examples of an answered split again,
    the largest one held out from the fine-tuning (train if none), and the agreement with the kept
    answers is logged and written to ``teacher/finetune/remade.json``. A complete model in place is
    left alone."""
    from ..training.sft import trained_fingerprint
    from .finetune import finetune_teacher

    folder = Path(metrics["model_path"])
    if trained_fingerprint(folder) is not None:
        return
    logger.warning("%s: the fine-tuned teacher is missing (its answers are kept); fine-tuning it again "
                   "with the same config", folder)
    lm = load_model(cfg.model)
    prompter = make_prompter(task_cfg, cfg, splits["train"], lm.tokenizer)
    out_dir = RunDir(run_dir).teacher
    lm = finetune_teacher(lm, prompter, splits["train"], cfg.train, out_dir / "finetune")
    if Path(lm.path).resolve() != folder.resolve():
        raise ConfigError(f"{out_dir / 'metrics.json'}: model_path {folder} is not where this run fine-tunes "
                          f"its teacher ({lm.path})")
    answered = {s: read_answers(run_dir, s) for s in cfg.splits if RunDir(run_dir).answers(s).is_file()}
    held_out = [s for s in answered if s != "train"]  # the largest: train is what it was fine-tuned on
    split = max(held_out, key=lambda s: len(answered[s])) if held_out else next(iter(answered), None)
    if split is not None and is_main():
        kept = {i: row["answer"] for i, row in answered[split].items()}
        examples = [ex for ex in splits[split] if ex.id in kept][:check]
        rows = answer_examples(lm, prompter, examples, cfg)
        report = {"split": split, "checked": len(rows), "agree": sum(r["answer"] == kept[r["id"]] for r in rows)}
        logger.warning("the remade teacher gives the kept answer on %d of %d %s examples",
                       report["agree"], report["checked"], split)
        write_json(out_dir / "finetune" / "remade.json", report)
    release(lm)


def loadable_teacher(task_cfg: TaskConfig, cfg: TeacherConfig, splits: dict[str, list[Example]],
                     run_dir: str | Path, metrics: dict[str, Any] | None) -> ModelConfig:
    """The teacher to load (to attribute, score faithfulness or distil logits): the model the teacher
    stage fine-tuned, or the configured one. Stages call this only when they are about to load it,
    so a run folder carried to another machine with the teacher's answers but not its weights
    fine-tunes it again only when something still needs it (``remake_finetuned``)."""
    path = (metrics or {}).get("model_path") if cfg.finetune else None
    if not path:
        return cfg.model
    remake_finetuned(task_cfg, cfg, splits, run_dir, metrics or {})
    return ModelConfig(**{**to_dict(cfg.model), "name": path})
