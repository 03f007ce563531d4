"""The teach stage: the teacher answers every example (after optional fine-tuning).

Choice tasks: the choice with the highest log-likelihood (summed or length-normalised).
Free-form tasks: greedy generation, correct when it evaluates to the gold value (SVAMP) or
matches the gold text. Answers and accuracies are written to ``<run_dir>/teacher/``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import config_hash, field, to_dict
from ..data import Example, Task, TaskConfig, get_task
from ..distributed import barrier, is_main
from ..errors import ConfigError
from ..evaluation.scoring import exact_match
from ..io import write_json, write_jsonl
from ..models import LoadedModel, ModelConfig, load_model
from ..training import TrainConfig
from ..training.sft import identity
from .generate import generate_answers
from .scoring import score_choices

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherConfig:
    model: ModelConfig = field(ModelConfig(name="qwen2.5-coder-0.5b-instruct"), "the teacher model")
    finetune: bool = field(True, "fine-tune the teacher on the train split before it answers")
    train: TrainConfig = field(TrainConfig(), "teacher fine-tuning (full, or LoRA with train.lora)")
    scoring: Literal["sum", "mean"] = field(
        "sum", "choice scoring: summed or length-normalised log-likelihood"
    )
    splits: list[str] = field(["train", "validation", "test"], "splits the teacher answers")
    batch_size: int = field(8, "examples per scoring/generation batch")
    max_new_tokens: int = field(32, "free-form tasks: tokens generated per answer")

    def __post_init__(self) -> None:
        bad = [s for s in self.splits if s not in ("train", "validation", "test")]
        if bad:
            raise ConfigError(f"config key 'teacher.splits': unknown split {bad[0]!r}")


def is_correct(example: Example, answer: str) -> bool:
    """The teacher's argument order for :func:`saliency_distill.evaluation.exact_match`, the
    one rule that scores teacher and student alike."""
    return exact_match(answer, example)


def answer_examples(
    lm: LoadedModel, task: Task, task_cfg: TaskConfig, examples: list[Example], cfg: TeacherConfig
) -> list[dict[str, Any]]:
    prompts = [task.render(ex, task_cfg).text for ex in examples]
    rows: list[dict[str, Any]] = []
    if task.answer_type(task_cfg) == "choice":
        scores = score_choices(lm, prompts, [ex.choices or () for ex in examples], cfg.batch_size)
        picks = {"sum": scores.best(False), "mean": scores.best(True)}
        for i, ex in enumerate(examples):
            assert ex.choices is not None
            answer = ex.choices[picks[cfg.scoring][i]]
            rows.append({
                "id": ex.id, "answer": answer, "gold": ex.label, "correct": is_correct(ex, answer),
                "answer_sum": ex.choices[picks["sum"][i]], "answer_mean": ex.choices[picks["mean"][i]],
                "logprobs": [round(s, 4) for s in scores.sums[i]], "lengths": scores.lengths[i],
            })
    else:
        answers = generate_answers(lm, prompts, cfg.max_new_tokens, cfg.batch_size)
        for ex, answer in zip(examples, answers):
            rows.append({"id": ex.id, "answer": answer, "gold": ex.label, "correct": is_correct(ex, answer)})
    return rows


def accuracy(rows: list[dict[str, Any]], gold: dict[str, Example], key: str = "answer") -> float:
    if not rows:
        return float("nan")
    return sum(is_correct(gold[r["id"]], r[key]) for r in rows) / len(rows)


def teach(
    task_cfg: TaskConfig, cfg: TeacherConfig, splits: dict[str, list[Example]], run_dir: str | Path,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune (optionally) and answer; reuse a finished stage made under the same config."""
    from .finetune import finetune_teacher

    out_dir = Path(run_dir) / "teacher"
    # Logging and checkpoint settings of the fine-tuning do not change the answers.
    digest = config_hash({"task": to_dict(task_cfg), "teacher": {**to_dict(cfg), "train": identity(cfg.train)}})
    metrics_path = out_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("config_hash") == digest:
            logger.info("reusing teacher answers in %s", out_dir)
            return metrics
        if not overwrite:
            raise ConfigError(
                f"{metrics_path}: teacher stage ran under another config (hash {metrics.get('config_hash')}, "
                f"now {digest}); use another run_dir or --overwrite"
            )
        metrics_path.unlink()
    task = get_task(task_cfg.name)
    lm = load_model(cfg.model)
    metrics: dict[str, Any] = {"config_hash": digest, "model": cfg.model.name, "finetuned": cfg.finetune,
                               "scoring": cfg.scoring, "accuracy": {}}
    if cfg.finetune:
        lm = finetune_teacher(lm, task, task_cfg, splits["train"], cfg.train, out_dir / "finetune")
        metrics["train_metrics"] = json.loads((out_dir / "finetune" / "train_metrics.json").read_text())
    if not is_main():
        # Fine-tuning above ran data-parallel; answering writes shared files: the main process does it.
        barrier()
        return json.loads(metrics_path.read_text())
    for split in cfg.splits:
        examples = splits[split]
        logger.info("teacher answering %d %s examples", len(examples), split)
        rows = answer_examples(lm, task, task_cfg, examples, cfg)
        write_jsonl(out_dir / f"answers_{split}.jsonl", rows)
        gold = {ex.id: ex for ex in examples}
        acc = {"accuracy": accuracy(rows, gold), "n": len(rows)}
        if rows and "answer_sum" in rows[0]:
            acc["accuracy_sum"] = accuracy(rows, gold, "answer_sum")
            acc["accuracy_mean"] = accuracy(rows, gold, "answer_mean")
        metrics["accuracy"][split] = acc
    metrics["model_path"] = lm.path
    write_json(metrics_path, metrics)  # last: marks the stage complete
    barrier()
    return metrics


def read_answers(run_dir: str | Path, split: str) -> dict[str, dict[str, Any]]:
    """The teacher's answer rows of ``split`` by example id ("answer", "correct", ...)."""
    path = Path(run_dir) / "teacher" / f"answers_{split}.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path}: no teacher answers for split '{split}' (run `saliency-distill teach`)")
    with open(path, encoding="utf-8") as f:
        return {row["id"]: row for row in map(json.loads, f) if row}
