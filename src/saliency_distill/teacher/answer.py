"""The teach stage: the teacher answers every example (after optional fine-tuning).

Choice tasks: the choice with the highest log-likelihood (summed or length-normalised).
Free-form tasks: greedy generation, correct when it evaluates to the gold value (SVAMP) or
matches the gold text. Answers and accuracies are written to ``<run_dir>/teacher/``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..config import config_hash, field, to_dict
from ..data import Example, TaskConfig, get_task
from ..data.answers import exact_match
from ..distributed import barrier, is_main
from ..errors import ConfigError, DataError
from ..io import write_json, write_jsonl
from ..models import LoadedModel, ModelConfig, load_model, release
from ..models.tokens import context_length
from ..rowstore import RowStore
from ..run_dir import RunDir, announce_reuse, reuse_or_refuse
from ..training import TrainConfig
from ..training.config import resolve_bf16
from ..training.sft import identity
from .generate import generate_answers
from .prompt import TeacherPrompter
from .quality import answer_quality, collapse_warning
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
    format: Literal["auto", "text", "letter"] = field(
        "auto",
        "choice tasks: score each option's text (text) or its label (a), (b), ... (letter; a closed "
        "label set such as NLI's is shown as lettered options); auto = letter for choice tasks (measured "
        "better on every task in benchmarks/results/teacher_quality.md), text for free-form ones",
    )
    shots: int = field(0, "demonstrations from the train split before each prompt (seeded; never the example itself)")
    chat: bool = field(False, "wrap the prompt in the model's chat template, with an instruction")
    splits: list[str] = field(["train", "validation", "test"], "splits the teacher answers")
    batch_size: int = field(8, "examples per scoring/generation batch")
    max_new_tokens: int = field(32, "free-form tasks: tokens generated per answer")

    def __post_init__(self) -> None:
        bad = [s for s in self.splits if s not in ("train", "validation", "test")]
        if bad:
            raise ConfigError(f"config key 'teacher.splits': unknown split {bad[0]!r}")
        if self.shots < 0:
            raise ConfigError(f"config key 'teacher.shots': {self.shots} must be >= 0")
        object.__setattr__(self, "train", resolve_bf16(self.train, self.model.device))  # bf16: auto


def is_correct(example: Example, answer: str) -> bool:
    """The teacher's argument order for :func:`saliency_distill.evaluation.exact_match`, the
    one rule that scores teacher and student alike."""
    return exact_match(answer, example)


def make_prompter(
    task_cfg: TaskConfig, cfg: TeacherConfig, train: list[Example], tokenizer: Any = None
) -> TeacherPrompter:
    """How this teacher config asks ``task_cfg``'s examples (demonstrations from ``train``)."""
    return TeacherPrompter(get_task(task_cfg.name), task_cfg, cfg.format, cfg.shots, cfg.chat,
                           demo_pool=train, tokenizer=tokenizer, seed=task_cfg.seed)


def check_prompt_lengths(lm: LoadedModel, prompts: list[str], ids: list[str], cfg: TeacherConfig) -> None:
    """A prompt the model cannot read whole is an error naming the example (and the shots key)."""
    limit = context_length(lm)
    if limit is None:
        return
    room = limit - (0 if lm.is_seq2seq else 8)  # leave a few tokens for the answer
    for ex_id, prompt in zip(ids, prompts):
        n = len(lm.tokenizer(prompt)["input_ids"])
        if n > room:
            why = f" with {cfg.shots} demonstrations (lower teacher.shots)" if cfg.shots else ""
            key = "config key 'teacher.shots': " if cfg.shots else ""
            raise DataError(
                f"{key}example {ex_id}: the teacher's prompt{why} is {n} tokens, longer than the "
                f"{limit}-token context of {lm.name}"
            )


def answer_examples(
    lm: LoadedModel, prompter: TeacherPrompter, examples: list[Example], cfg: TeacherConfig
) -> list[dict[str, Any]]:
    """One row per example: the answer (a choice's text, or generated text), the string scored
    after the prompt (``target``: the option text or letter), correctness and the scores."""
    prompts = [prompter.render(ex).text for ex in examples]
    rows: list[dict[str, Any]] = []
    if prompter.kind == "choice":
        candidates = [prompter.candidates(ex) for ex in examples]
        scores = score_choices(lm, prompts, candidates, cfg.batch_size)
        picks = {"sum": scores.best(False), "mean": scores.best(True)}
        for i, ex in enumerate(examples):
            assert ex.choices is not None
            pick = picks[cfg.scoring][i]
            answer = ex.choices[pick]
            rows.append({
                "id": ex.id, "answer": answer, "target": candidates[i][pick], "gold": ex.label,
                "correct": is_correct(ex, answer),
                "answer_sum": ex.choices[picks["sum"][i]], "answer_mean": ex.choices[picks["mean"][i]],
                "logprobs": [round(s, 4) for s in scores.sums[i]], "lengths": scores.lengths[i],
            })
    else:
        answers = generate_answers(lm, prompts, cfg.max_new_tokens, cfg.batch_size)
        for ex, answer in zip(examples, answers):
            rows.append({"id": ex.id, "answer": answer, "target": answer, "gold": ex.label,
                         "correct": is_correct(ex, answer)})
    return rows


def answer_resumably(
    lm: LoadedModel, prompter: TeacherPrompter, examples: list[Example], cfg: TeacherConfig, partial: Path,
    digest: str, overwrite: bool = False,
) -> tuple[list[dict[str, Any]], float, int]:
    """:func:`answer_examples` chunk by chunk, each chunk appended to the row store ``partial`` as it
    finishes, so that a killed run keeps what it answered. The chunks are cut from the whole
    split: a resumed run batches every example as an uninterrupted one would (the same padding,
    the same scores). Returns the rows in example order, the seconds spent and the examples
    answered by this call."""
    store = RowStore(partial, {"config_hash": digest}, overwrite=overwrite, kind="teacher answers in progress")
    size = 4 * cfg.batch_size
    seconds, answered = 0.0, 0
    for start in range(0, len(examples), size):
        chunk = examples[start:start + size]
        if all(ex.id in store for ex in chunk):
            continue
        started = time.perf_counter()
        store.append(answer_examples(lm, prompter, chunk, cfg))
        seconds += time.perf_counter() - started
        answered += len(chunk)
    by_id = {row["id"]: row for row in store.rows()}
    return [by_id[ex.id] for ex in examples], seconds, answered


def accuracy(rows: list[dict[str, Any]], gold: dict[str, Example], key: str = "answer") -> float:
    if not rows:
        return float("nan")
    return sum(is_correct(gold[r["id"]], r[key]) for r in rows) / len(rows)


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


def teach(
    task_cfg: TaskConfig, cfg: TeacherConfig, splits: dict[str, list[Example]], run_dir: str | Path,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune (optionally) and answer; reuse a finished stage made under the same config."""
    from .finetune import finetune_teacher

    out_dir = RunDir(run_dir).teacher
    # Logging and checkpoint settings of the fine-tuning do not change the answers.
    digest = config_hash({"task": to_dict(task_cfg), "teacher": {**to_dict(cfg), "train": identity(cfg.train)}})
    metrics_path = RunDir(run_dir).teacher_metrics
    done = reuse_or_refuse(metrics_path, digest, "teacher answers", overwrite)
    if done is not None:
        announce_reuse(logger, "teacher answers", out_dir)
        return done  # a fine-tuned model lost since is made again when a stage loads it (remake_finetuned)
    make_prompter(task_cfg, replace(cfg, chat=False), splits["train"])  # format and shots: before loading
    lm = load_model(cfg.model)
    prompter = make_prompter(task_cfg, cfg, splits["train"], lm.tokenizer)
    for split in dict.fromkeys([*cfg.splits, *(["train"] if cfg.finetune else [])]):
        check_prompt_lengths(lm, [prompter.render(ex).text for ex in splits[split]],
                             [ex.id for ex in splits[split]], cfg)
    metrics: dict[str, Any] = {"config_hash": digest, "model": cfg.model.name, "finetuned": cfg.finetune,
                               "scoring": cfg.scoring, "prompt": prompter.describe(), "accuracy": {},
                               "quality": {}, "warnings": []}
    if cfg.finetune:
        lm = finetune_teacher(lm, prompter, splits["train"], cfg.train, out_dir / "finetune", overwrite=overwrite)
        metrics["train_metrics"] = json.loads((out_dir / "finetune" / "train_metrics.json").read_text())
    if not is_main():
        # Fine-tuning above ran data-parallel; answering writes shared files: the main process does it.
        barrier()
        return json.loads(metrics_path.read_text())
    partials = []
    for split in cfg.splits:
        examples = splits[split]
        logger.debug("teacher answering %d %s examples", len(examples), split)
        partial = out_dir / f"answers_{split}.partial.jsonl"
        rows, seconds, answered = answer_resumably(lm, prompter, examples, cfg, partial, digest, overwrite)
        write_jsonl(out_dir / f"answers_{split}.jsonl", rows)
        partials.append(partial)  # kept until the stage is complete: a later split's kill keeps this one's rows
        gold = {ex.id: ex for ex in examples}
        acc = {"accuracy": accuracy(rows, gold), "n": len(rows)}
        if rows and "answer_sum" in rows[0]:
            acc["accuracy_sum"] = accuracy(rows, gold, "answer_sum")
            acc["accuracy_mean"] = accuracy(rows, gold, "answer_mean")
        metrics["accuracy"][split] = acc
        quality = answer_quality(rows, examples)
        quality["seconds_per_example"] = round(seconds / answered, 4) if answered else None  # this process's
        metrics["quality"][split] = quality
        warning = collapse_warning(split, quality)
        if warning:
            logger.warning(warning)
            metrics["warnings"].append(warning)
    metrics["model_path"] = lm.path
    write_json(metrics_path, metrics)  # last: marks the stage complete
    for partial in partials:
        partial.unlink()
    release(lm)
    barrier()
    return metrics


def read_answers(run_dir: str | Path, split: str) -> dict[str, dict[str, Any]]:
    """The teacher's answer rows of ``split`` by example id ("answer", "correct", ...)."""
    path = RunDir(run_dir).answers(split)
    if not path.is_file():
        raise ConfigError(f"{path}: no teacher answers for split '{split}' (run `saliency-distill teach`)")
    with open(path, encoding="utf-8") as f:
        return {row["id"]: row for row in map(json.loads, f) if row}
