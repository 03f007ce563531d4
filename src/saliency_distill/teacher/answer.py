"""The teach stage: the teacher answers every example (after optional fine-tuning).

Choice tasks: the choice with the highest log-likelihood (summed or length-normalised), after an
optional label-prior calibration (:mod:`.calibration`). Free-form tasks: greedy generation that
ends at the first stop string (``teacher.stop``), put in the task's canonical form (SVAMP: the
equation parsed and printed back; no equation is no answer); correct when it evaluates to the
gold value (SVAMP) or matches the gold text. Answers and accuracies are written to
``<run_dir>/teacher/``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from ..config import config_hash, field, to_dict
from ..data import Example, TaskConfig, get_task
from ..data.answers import exact_match
from ..data.pool import POOL
from ..distributed import barrier, is_main
from ..errors import ConfigError, DataError
from ..io import write_json, write_jsonl
from ..models import LoadedModel, ModelConfig, load_model, release
from ..models.tokens import context_length
from ..rowstore import RowStore
from ..run_dir import RunDir, announce_reuse, mark_made, reuse_or_refuse
from ..training import TrainConfig
from ..training.config import resolve_bf16
from ..training.sft import identity
from .calibration import CALIBRATIONS, calibrate_answers, fit_calibration
from .generate import cut_at_stop, generate_continuations
from .prompt import TeacherPrompter, check_calibration
from .quality import answer_quality, class_warnings, collapse_warning
from .reuse import reusable_rows, rows_in
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
    demonstrations: Literal["balanced", "random"] = field(
        "balanced", "how the shots are drawn: balanced across the labels where the task has a label set "
        "(one per label in a seeded order, round robin), or a plain random draw")
    demo_seed: int | None = field(None, "seed of the demonstrations' draw (null: task.seed)")
    calibration: Literal["none", "contextual", "prior"] = field(
        "none", "choice tasks: correct the teacher's label prior; contextual divides the option "
        "probabilities by those of content-free inputs under the same prompt (Zhao et al. 2021), "
        "prior biases them so that the answers on validation are distributed as the gold labels there")
    stop: list[str] = field(
        ["\n", "Human:", "Question:", "User:"],
        "free-form tasks: generation ends at the first of these strings (or EOS); the text before it is "
        "the answer")
    chat: bool = field(False, "wrap the prompt in the model's chat template, with an instruction")
    splits: list[str] = field(["train", "validation", "test"], "splits the teacher answers")
    batch_size: int = field(8, "examples per scoring/generation batch")
    max_new_tokens: int = field(32, "free-form tasks: tokens generated per answer")
    reuse_answers: list[str] = field(
        [], "run folders whose teacher answers are taken for the same examples instead of computed again; "
        "refused unless that teacher asked the same way (model, dtype, format, shots, demonstrations)")

    def __post_init__(self) -> None:
        bad = [s for s in self.splits if s not in ("train", "validation", "test")]
        if bad:
            raise ConfigError(f"config key 'teacher.splits': unknown split {bad[0]!r}")
        if self.shots < 0:
            raise ConfigError(f"config key 'teacher.shots': {self.shots} must be >= 0")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"config key 'teacher.calibration': {self.calibration!r} is not one of "
                              f"{list(CALIBRATIONS)}")
        if self.demonstrations not in ("balanced", "random"):
            raise ConfigError(f"config key 'teacher.demonstrations': {self.demonstrations!r} is not one of "
                              "['balanced', 'random']")
        if self.calibration == "prior" and "validation" not in self.splits:
            raise ConfigError("config key 'teacher.calibration': prior is fitted on the validation split's "
                              "answers; add validation to teacher.splits")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ConfigError("config key 'teacher.stop': a stop sequence is empty (it would end every answer "
                              "before it starts)")
        object.__setattr__(self, "train", resolve_bf16(self.train, self.model.device))  # bf16: auto


def is_correct(example: Example, answer: str) -> bool | None:
    """The teacher's argument order for :func:`saliency_distill.evaluation.exact_match`, the
    one rule that scores teacher and student alike; None for a pool example (it has no label)."""
    return None if example.label is None else exact_match(answer, example)


def make_prompter(
    task_cfg: TaskConfig, cfg: TeacherConfig, train: list[Example], tokenizer: Any = None
) -> TeacherPrompter:
    """How this teacher config asks ``task_cfg``'s examples (demonstrations from ``train``)."""
    task = get_task(task_cfg.name)
    check_calibration(task, task_cfg, cfg.calibration)
    seed = task_cfg.seed if cfg.demo_seed is None else cfg.demo_seed
    return TeacherPrompter(task, task_cfg, cfg.format, cfg.shots, cfg.chat, demo_pool=train, tokenizer=tokenizer,
                           seed=seed, balanced=cfg.demonstrations == "balanced")


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
    """One row per example: the answer (a choice's text, or the canonical generated answer, None
    when there is none), the string scored or generated after the prompt (``target``: the option
    text or letter, the canonical answer), correctness and the scores (choices) or the raw
    continuation (free-form)."""
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
        raws = generate_continuations(lm, prompts, cfg.max_new_tokens, cfg.batch_size, cfg.stop)
        for ex, raw in zip(examples, raws):
            answer = prompter.task.canonicalise(cut_at_stop(raw, cfg.stop))
            rows.append({"id": ex.id, "answer": answer, "target": answer, "gold": ex.label,
                         "correct": answer is not None and is_correct(ex, answer), "raw": raw})
    return rows


def answer_resumably(
    lm: LoadedModel, prompter: TeacherPrompter, examples: list[Example], cfg: TeacherConfig, partial: Path,
    digest: str, overwrite: bool = False, progress: bool = False, desc: str = "teacher",
    reused: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], float, int]:
    """:func:`answer_examples` chunk by chunk, each chunk appended to the row store ``partial`` as it
    finishes, so that a killed run keeps what it answered. The chunks are cut from the whole
    split: a resumed run batches every example as an uninterrupted one would (the same padding,
    the same scores). ``reused``: rows taken from earlier runs (:mod:`.reuse`), stored first.
    Returns the rows in example order, the seconds spent and the examples answered by this call."""
    store = RowStore(partial, {"config_hash": digest}, overwrite=overwrite, kind="teacher answers in progress")
    store.append(row for ex in examples if (row := (reused or {}).get(ex.id)) is not None)
    # Each chunk reads the demonstrations once (teacher/scoring.py): 64 questions a chunk at the
    # default batch of 8, about 20 s of the 1.5B teacher on 2 cores between saves.
    size = 8 * cfg.batch_size
    seconds, answered = 0.0, 0
    done = sum(ex.id in store for ex in examples)
    bar = tqdm(total=len(examples), initial=done, unit="ex", desc=desc, disable=not progress or done == len(examples))
    for start in range(0, len(examples), size):
        # A resumed chunk is all done or not begun; a chunk with reused rows answers only the rest.
        chunk = [ex for ex in examples[start:start + size] if ex.id not in store]
        if not chunk:
            continue
        started = time.perf_counter()
        store.append(answer_examples(lm, prompter, chunk, cfg))
        seconds += time.perf_counter() - started
        answered += len(chunk)
        bar.update(len(chunk))
    bar.close()
    by_id = {row["id"]: row for row in store.rows()}
    return [by_id[ex.id] for ex in examples], seconds, answered


def accuracy(rows: list[dict[str, Any]], gold: dict[str, Example], key: str = "answer") -> float:
    if not rows:
        return float("nan")
    return sum(r[key] is not None and is_correct(gold[r["id"]], r[key]) for r in rows) / len(rows)


def split_accuracy(rows: list[dict[str, Any]], examples: list[Example],
                   quality_before: dict[str, Any] | None) -> dict[str, Any]:
    """A labeled split's accuracy (of the summed and the mean scores too, and before calibration)."""
    gold = {ex.id: ex for ex in examples}
    acc = {"accuracy": accuracy(rows, gold), "n": len(rows)}
    for key in ("sum", "mean") if rows and "answer_sum" in rows[0] else ():
        acc[f"accuracy_{key}"] = accuracy(rows, gold, f"answer_{key}")
    if quality_before:
        acc["accuracy_uncalibrated"] = quality_before["accuracy"]
    return acc


def teach(
    task_cfg: TaskConfig, cfg: TeacherConfig, splits: dict[str, list[Example]], run_dir: str | Path,
    overwrite: bool = False, progress: bool = False, pool: bool = True,
) -> dict[str, Any]:
    """Fine-tune (optionally) and answer (``progress``: a bar per split with examples/s and the time
    left); reuse a finished stage made under the same config. ``pool``: answer the pool too (where
    a mode learns from it); a finished stage that left it out answers it then, its other rows kept."""
    from .finetune import finetune_teacher

    out_dir = RunDir(run_dir).teacher
    # Logging and checkpoint settings of the fine-tuning do not change the answers.
    digest = config_hash({"task": to_dict(task_cfg), "teacher": {**to_dict(cfg), "train": identity(cfg.train)}})
    metrics_path = RunDir(run_dir).teacher_metrics
    done = reuse_or_refuse(metrics_path, digest, "teacher answers", overwrite)
    add_pool = pool and POOL in splits and done is not None and POOL not in done.get("quality", {})
    if done is not None and not add_pool:
        announce_reuse(logger, "teacher answers", out_dir)
        return done  # a fine-tuned model lost since is made again when a stage loads it (remake_finetuned)
    plain = make_prompter(task_cfg, replace(cfg, chat=False), splits["train"])  # format and shots: before loading
    answering = [*cfg.splits, *([POOL] if POOL in splits and pool else [])]  # the pool: the inputs without labels
    wanted = [ex for split in answering for ex in splits[split]]
    reused = reusable_rows(cfg.reuse_answers, cfg, plain.describe(), wanted, plain.kind != "choice",
                           is_correct)
    if reused:
        logger.info("teacher answers: %d of %d taken from %s", len(reused), len(wanted), ", ".join(cfg.reuse_answers))
    own = rows_in(Path(run_dir), wanted, is_correct) if add_pool else {}  # this config's, without the pool: kept
    if add_pool:
        logger.info("teacher answers: adding the pool's %d inputs to %s", len(splits[POOL]), out_dir)
    reused |= own
    # The model is loaded unless every answer was found elsewhere and nothing else needs it.
    lm = (load_model(cfg.model) if cfg.finetune or cfg.chat or cfg.calibration != "none"
          or any(ex.id not in reused for ex in wanted) else None)
    prompter = make_prompter(task_cfg, cfg, splits["train"], lm.tokenizer) if lm else plain
    for split in dict.fromkeys([*answering, *(["train"] if cfg.finetune else [])]) if lm else ():
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
    answered, seconds = {}, {}
    partials = []
    for split in answering:
        logger.debug("teacher answering %d %s examples", len(splits[split]), split)
        partial = out_dir / f"answers_{split}.partial.jsonl"
        rows, spent, n = answer_resumably(lm, prompter, splits[split], cfg, partial, digest, overwrite, progress,
                                          f"teacher {split}", reused)
        answered[split], seconds[split] = rows, (round(spent / n, 4) if n else None, n)  # this process's
        partials.append(partial)  # kept until the stage is complete: a kill keeps every split's rows
    calibration = None
    if cfg.calibration != "none":
        calibration = metrics["calibration"] = fit_calibration(lm, prompter, cfg, splits, answered)
    for split, rows in answered.items():
        examples = splits[split]
        quality_before = answer_quality(rows, examples) if calibration else None
        if calibration:
            rows = calibrate_answers(rows, examples, prompter, calibration, cfg.scoring)
        write_jsonl(out_dir / f"answers_{split}.jsonl", rows)
        quality = answer_quality(rows, examples)
        quality["seconds_per_example"], quality["computed"] = seconds[split]  # the rows not taken from elsewhere
        if quality_before:
            quality["uncalibrated"] = {k: quality_before[k] for k in ("accuracy", "answer_distribution", "recall")
                                       if k in quality_before}
        metrics["quality"][split] = quality
        if split != POOL:  # the pool has no labels: its answer distribution, no accuracy
            metrics["accuracy"][split] = split_accuracy(rows, examples, quality_before)
        for warning in filter(None, [collapse_warning(split, quality), *class_warnings(split, quality)]):
            logger.warning(warning)
            metrics["warnings"].append(warning)
    metrics["model_path"] = lm.path if lm else None
    metrics["reused_answers"] = len(set(reused) - set(own))  # from other runs
    write_json(metrics_path, metrics)  # last: marks the stage complete
    mark_made("teacher answers", out_dir)
    for partial in partials:
        partial.unlink()
    if lm:
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
