"""Student training modes: what (input -> target) pairs each one trains on.

All modes train on the same examples and are evaluated the same way, on the "predict" task:

- ``standard``: x, predict -> gold label (standard fine-tuning, the first baseline);
- ``teacher-label``: x, predict -> the teacher's answer (sequence-level distillation; examples it gave
  no answer for are left out);
- ``saliency`` (the method): x, predict -> gold label and x, explain -> the teacher's
  rationale words, weighted alpha / (1 - alpha);
- ``llm-rationale``: the same multi-task recipe with the dataset's LLM-written rationale
  (Distilling Step-by-Step, the second baseline);
- ``soft-label``: x, predict -> gold label, plus the teacher's distribution over a choice task's
  options: the student's log p of every option after "x\npredict:" is matched to the teacher's
  option scores by a KL term (:func:`~saliency_distill.training.losses.option_kl`, at temperature
  ``student.temperature``), weighted alpha / (1 - alpha). It needs no shared vocabulary;
- controls for the saliency mode, the same recipe with other explanations: ``random-words``
  (k content words drawn at random per example and seed: what any k words of the input give)
  and ``human-rationale`` (the dataset's human explanation: CoS-E, e-SNLI, ANLI reasons);
- the pool modes train on the gold labels plus the pool (inputs without labels, ``task.unlabeled``
  or ``task.labeled``), each pool input labelled by the teacher: ``pool-label`` (its answer),
  ``pool-soft`` (its answer and its distribution over the options, as soft-label),
  ``pool-saliency`` (its answer, and the saliency explain task on every example) and
  ``pool-random-words`` (the same with random words: the control). ``student.pool_min_confidence``
  leaves out pool inputs the teacher is unsure of;
- ``saliency-after`` and its control ``random-words-after``: the explanation after the label in
  one sequence (Wadhwa et al., EMNLP 2024): "x\npredict: label\nexplain:" -> the words, beside
  "x\npredict:" -> label, so the rationale is learned given the answer and the label's tokens
  are learned once; evaluation reads the first line, the label.
- ``saliency-consistency`` and its control ``random-consistency`` (choice tasks): x, predict ->
  gold label, and the student's distribution over the options on x with its least salient
  content words dropped (``student.mask_fraction`` of them, :mod:`.consistency`) is matched to
  its distribution on the whole x (KL, the whole input's side held fixed), weighted alpha /
  (1 - alpha); the control drops as many words at random.
- ``pool-saliency-after``, ``pool-random-words-after``, ``pool-saliency-consistency`` and
  ``pool-random-consistency``: those four over the gold labels plus the pool, each pool input
  labelled by the teacher (its rationale explains that answer; its second reading drops words of
  the pool input as of a train one).

Each mode is a :class:`Mode` that says what it needs, so the pipeline runs the teacher and the
attribution only for modes that use them.

Where the task tag goes is the student's prompt format (:func:`templates`): ``suffix``,
"x\npredict:" (the default for causal students: an example's two sequences then begin with
the same tokens and share one copy of x in training), or ``prefix``, "predict: x" (Distilling
Step-by-Step's format, the default for encoder-decoder students).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..data import Example, Task, TaskConfig
from ..errors import DataError
from ..training.losses import EXPLAIN, OPTION, PREDICT

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Mode:
    """A training mode: where its label comes from and what (if anything) it learns to explain."""

    name: str
    label: str = "gold"  # "gold" or "teacher" (the teacher's answer)
    explain: str | None = None  # None, "saliency" (the store), "random", "llm" or "human"
    soft: bool = False  # also match the teacher's distribution over the options
    pool: bool = False  # also train on the pool, labelled by the teacher
    after: bool = False  # the explanation follows the label in one sequence (x, predict: label, explain: words)
    consistency: str | None = None  # None, "saliency" or "random": which words the second reading drops

    @property
    def needs_teacher(self) -> bool:
        return self.label == "teacher" or self.needs_rationales or self.soft or self.pool

    @property
    def needs_answers(self) -> bool:
        """Reads the teacher's answers file (its answer, or its option scores)."""
        return self.label == "teacher" or self.soft or self.pool

    @property
    def needs_rationales(self) -> bool:
        """Needs the saliency rationale store (the attribute stage)."""
        return self.explain == "saliency" or self.consistency == "saliency"


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("standard"),
    Mode("teacher-label", label="teacher"),
    Mode("saliency", explain="saliency"),
    Mode("llm-rationale", explain="llm"),
    Mode("random-words", explain="random"),
    Mode("human-rationale", explain="human"),
    Mode("soft-label", soft=True),
    Mode("pool-label", pool=True),
    Mode("pool-soft", soft=True, pool=True),
    Mode("pool-saliency", explain="saliency", pool=True),
    Mode("pool-random-words", explain="random", pool=True),
    Mode("saliency-after", explain="saliency", after=True),
    Mode("random-words-after", explain="random", after=True),
    Mode("saliency-consistency", consistency="saliency"),
    Mode("random-consistency", consistency="random"),
    Mode("pool-saliency-after", explain="saliency", after=True, pool=True),
    Mode("pool-random-words-after", explain="random", after=True, pool=True),
    Mode("pool-saliency-consistency", consistency="saliency", pool=True),
    Mode("pool-random-consistency", consistency="random", pool=True),
)}
DEFAULT_MODES = ["standard", "teacher-label", "saliency", "llm-rationale"]
FORMATS = ("auto", "suffix", "prefix")
INPUT = "{input}"  # where a template puts the rendered example


def templates(fmt: str, seq2seq: bool, predict_tag: str = "predict", explain_tag: str = "explain") -> tuple[str, str]:
    """The (predict, explain) prompt templates of format ``fmt``; ``auto`` is ``prefix`` for an
    encoder-decoder student and ``suffix`` for a causal one."""
    if fmt not in FORMATS:
        from ..errors import ConfigError

        raise ConfigError(f"config key 'student.format': unknown format {fmt!r} (choose from: {', '.join(FORMATS)})")
    if fmt == "auto":
        fmt = "prefix" if seq2seq else "suffix"
    if fmt == "prefix":
        return f"{predict_tag}: {INPUT}", f"{explain_tag}: {INPUT}"
    return f"{INPUT}\n{predict_tag}:", f"{INPUT}\n{explain_tag}:"


def fill(template: str, text: str) -> str:
    """``template`` with the rendered example in place of ``{input}`` (no other formatting)."""
    return template.replace(INPUT, text)


@dataclass(frozen=True)
class TrainingPairs:
    prompts: list[str]
    targets: list[str]
    tasks: list[int]
    ids: list[str]
    scores: list[float | None] = field(default_factory=list)  # the teacher's log p of an OPTION pair
    views: list[int | None] = field(default_factory=list)  # consistency OPTION pairs: 0 whole input, 1 dropped words

    @property
    def multitask(self) -> bool:
        return any(t != PREDICT for t in self.tasks)

    @property
    def soft(self) -> bool:
        return any(s is not None for s in self.scores)

    @property
    def consistency(self) -> bool:
        return any(v is not None for v in self.views)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        from ..errors import ConfigError

        raise ConfigError(f"unknown training mode {mode!r} (choose from: {', '.join(MODES)})")


def build_pairs(
    mode: str,
    task: Task,
    task_cfg: TaskConfig,
    examples: Sequence[Example],
    teacher_answers: Mapping[str, Mapping[str, Any]] | None = None,
    rationales: Mapping[str, str] | None = None,
    predict_template: str = "{input}\npredict:",
    explain_template: str = "{input}\nexplain:",
    require_rationales: bool = False,
    min_confidence: float = 0.0,
    masked: Mapping[str, str] | None = None,
) -> TrainingPairs:
    """The training pairs of ``mode``; an example's predict and explain pairs are adjacent.

    Examples without a dataset rationale (llm- and human-rationale modes) train on the label only,
    with a warning that counts them; with ``require_rationales`` the first one is an error. A pool
    example (no label) learns the teacher's answer, and is left out when the teacher's probability
    of it is under ``min_confidence``. ``masked``: a consistency mode's second reading of each input
    (:func:`.consistency.masked_inputs`)."""
    check_mode(mode)
    spec = MODES[mode]
    if spec.explain in ("llm", "human"):
        attr = f"{spec.explain}_rationale"
        if not any(getattr(ex, attr) for ex in examples):
            raise DataError(
                f"mode {mode} needs {'LLM-written' if spec.explain == 'llm' else 'human'} rationales, and task "
                f"'{task_cfg.name}' has none (the DSbS tasks have them; a file/hf task maps one with "
                f"task.fields.{'llm_rationale' if spec.explain == 'llm' else 'rationale'})"
            )
        missing = sum(not getattr(ex, attr) for ex in examples)
        if missing and require_rationales:
            first = next(ex.id for ex in examples if not getattr(ex, attr))
            raise DataError(f"example {first}: no {spec.explain} rationale ({missing} of {len(examples)} train "
                            "examples lack one; student.require_rationales is set)")
        if missing:
            logger.warning("mode %s: %d of %d train examples have no %s rationale and train on the label only",
                           mode, missing, len(examples), spec.explain)
    if spec.soft:
        _check_soft(mode, task, task_cfg, examples, teacher_answers)
    if spec.consistency and task.answer_type(task_cfg) != "choice":
        raise DataError(f"mode {mode} needs a choice task (a distribution over the options to keep); "
                        f"task '{task_cfg.name}' has free-form answers")
    out = TrainingPairs([], [], [], [])
    unanswered = unsure = 0
    for ex in examples:
        text = task.render(ex, task_cfg).text
        label = ex.label
        if spec.label == "teacher" or ex.label is None:
            if teacher_answers is None or ex.id not in teacher_answers:
                split = "train" if ex.label is not None else "the pool"
                raise DataError(f"example {ex.id}: no teacher answer (run `saliency-distill teach` on {split})")
            label = teacher_answers[ex.id]["answer"]
            if label is None:  # the teacher gave no answer (a free-form one without an equation)
                unanswered += 1
                continue
            if ex.label is None and min_confidence > 0 and confidence(teacher_answers[ex.id], ex) < min_confidence:
                unsure += 1
                continue
        _add(out, ex.id, fill(predict_template, text), label, PREDICT)
        explanation = None
        if spec.explain in ("saliency", "random"):
            if rationales is None or ex.id not in rationales:
                what = "in the store (run `saliency-distill attribute`)" if spec.explain == "saliency" else "drawn"
                raise DataError(f"example {ex.id}: no rationale {what}")
            explanation = rationales[ex.id]
        elif spec.explain == "llm":
            explanation = ex.llm_rationale
        elif spec.explain == "human":
            explanation = ex.human_rationale
        if explanation and spec.after:  # one sequence: x, predict: label, then the explain tag and the words
            tag = explain_template.replace(INPUT, "").strip()
            _add(out, ex.id, f"{fill(predict_template, text)} {label}\n{tag}", explanation, EXPLAIN)
        elif explanation:
            _add(out, ex.id, fill(explain_template, text), explanation, EXPLAIN)
        if spec.soft:  # every option after the same prompt, with the teacher's score for it
            scores = teacher_answers[ex.id]["logprobs"]  # type: ignore[index]
            for choice, score in zip(ex.choices or (), scores):
                _add(out, ex.id, fill(predict_template, text), choice, OPTION, float(score))
        if spec.consistency:  # every option after the whole input, then after the input with words dropped
            if masked is None or ex.id not in masked:
                raise DataError(f"example {ex.id}: no second reading with words dropped (mode {mode})")
            for view, shown in enumerate((text, masked[ex.id])):
                for choice in ex.choices or ():
                    _add(out, ex.id, fill(predict_template, shown), choice, OPTION, view=view)
    if unanswered:
        logger.warning("mode %s: the teacher gave no answer for %d of %d train examples; they are left out",
                       mode, unanswered, len(examples))
    if unsure:
        logger.info("mode %s: %d pool inputs left out, the teacher's probability under %.2f (pool_min_confidence)",
                    mode, unsure, min_confidence)
    return out


def confidence(row: Mapping[str, Any], example: Example) -> float:
    """The teacher's probability of its answer: the softmax of its (calibrated) option scores; 1
    for a free-form answer, which has no distribution."""
    scores = row.get("logprobs")
    if not example.choices or not isinstance(scores, list) or row.get("answer") not in example.choices:
        return 1.0
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    return weights[example.choices.index(row["answer"])] / sum(weights)


def _check_soft(mode: str, task: Task, task_cfg: TaskConfig, examples: Sequence[Example],
                teacher_answers: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Soft labels need a choice task and the teacher's score of every option of every example."""
    if task.answer_type(task_cfg) != "choice":
        raise DataError(f"mode {mode} needs a choice task (the teacher's distribution over the options); "
                        f"task '{task_cfg.name}' has free-form answers")
    for ex in examples:
        row = (teacher_answers or {}).get(ex.id)
        if row is None:
            raise DataError(f"example {ex.id}: no teacher answer (run `saliency-distill teach` on train)")
        scores = row.get("logprobs")
        if not isinstance(scores, list) or len(scores) != len(ex.choices or ()):
            raise DataError(f"example {ex.id}: the teacher's answer has no score per option ('logprobs' with "
                            f"{len(ex.choices or ())} values; re-run `saliency-distill teach --overwrite`)")


def _add(out: TrainingPairs, ex_id: str, prompt: str, target: str, task: int, score: float | None = None,
         view: int | None = None) -> None:
    out.ids.append(ex_id)
    out.prompts.append(prompt)
    out.targets.append(target)
    out.tasks.append(task)
    out.scores.append(score)
    out.views.append(view)
