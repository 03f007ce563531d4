"""Label-prior calibration of a teacher's choice scores.

A prompted model prefers some options whatever the input: the letter "(a)", the label its
demonstrations ended on, the more frequent label word. Two corrections, both a per-option bias
added to the log-probabilities of an example's options (then renormalised):

- ``contextual`` (Zhao et al., ICML 2021, "Calibrate before use"): the bias is minus the
  log-probability that the same prompt (demonstrations, template, options block) gives each
  option when the example's content is replaced by content-free text ("N/A", "", "[MASK]";
  their probabilities averaged). A model with no preference is left as it was.
- ``prior``: the bias under which the teacher's answers on the validation split are distributed
  as the gold labels there (answer counts matched by an iterative search, the counts smoothed
  by one), so a label the teacher under-predicts gets pushed up.

Options are identified by position: for a label set (NLI) that is the label, for per-question
choices (CQA) the letter. Examples with different numbers of options get separate biases.
The biases are pure functions of lists of floats; :func:`fit_calibration` computes the scores
they need and :func:`calibrate_answers` applies them to the teach stage's rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from ..data import Example
from ..data.answers import exact_match
from .prompt import TeacherPrompter
from .scoring import score_choices

if TYPE_CHECKING:
    from ..models import LoadedModel

Calibration = Literal["none", "contextual", "prior"]
CALIBRATIONS: tuple[str, ...] = ("none", "contextual", "prior")
CONTENT_FREE = ("N/A", "", "[MASK]")
PRIOR_ITERATIONS = 300


def log_normalise(scores: Sequence[float]) -> list[float]:
    """Log-softmax of one example's option scores."""
    top = max(scores)
    total = top + math.log(sum(math.exp(s - top) for s in scores))
    return [s - total for s in scores]


def apply_bias(scores: Sequence[float], bias: Sequence[float]) -> list[float]:
    """Calibrated log-probabilities of one example's options: ``log_softmax(scores + bias)``."""
    if len(scores) != len(bias):
        raise ValueError(f"{len(scores)} option scores but a bias for {len(bias)} options")
    return log_normalise([s + b for s, b in zip(scores, bias)])


def contextual_bias(content_free_scores: Sequence[Sequence[float]]) -> list[float]:
    """Minus the log of the mean option distribution over the content-free prompts' scores."""
    probs = [[math.exp(v) for v in log_normalise(s)] for s in content_free_scores]
    mean = [sum(col) / len(probs) for col in zip(*probs)]
    return [-math.log(max(p, 1e-12)) for p in mean]


def prior_bias(scores: Sequence[Sequence[float]], gold: Sequence[int],
               iterations: int = PRIOR_ITERATIONS) -> list[float]:
    """The bias under which the teacher's answers over ``scores`` (one row of option scores per
    example, all with the same number of options) are distributed as the ``gold`` option indices.

    Answer counts are matched, not mean probabilities: a teacher can give a class much probability
    and still rarely answer it. Each step moves the bias by ``log(gold share / answer share)``
    (both smoothed by one count per option) with a step size of 1/sqrt(t + 1); the bias whose
    answers came closest to the gold shares (L1) is returned, the first of equals."""
    n_options = len(scores[0])
    smoothed = [1.0] * n_options
    for g in gold:
        smoothed[g] += 1.0
    target = [c / sum(smoothed) for c in smoothed]
    logp = [log_normalise(s) for s in scores]
    bias = [0.0] * n_options
    best = (math.inf, bias)
    for t in range(iterations):
        counts = [1.0] * n_options
        for row in logp:
            counts[max(range(n_options), key=lambda i: row[i] + bias[i])] += 1.0
        share = [c / sum(counts) for c in counts]
        distance = sum(abs(a - b) for a, b in zip(share, target))
        if distance < best[0] - 1e-12:
            best = (distance, bias)
        bias = [b + math.log(tg / sh) / math.sqrt(t + 1) for b, tg, sh in zip(bias, target, share)]
    shift = sum(best[1]) / n_options  # only differences matter: centre it for a readable record
    return [b - shift for b in best[1]]


def content_free_examples(examples: Sequence[Example], choices_are_content: bool) -> dict[int, list[Example]]:
    """Per number of options: the content-free stand-ins of an example with that many options.

    Every content field is replaced by each :data:`CONTENT_FREE` text; per-question options
    (``choices_are_content``) are too, while a label set stays as it is (it is template)."""
    out: dict[int, list[Example]] = {}
    for ex in examples:
        n = len(ex.choices or ())
        if n in out or not n:
            continue
        stand_ins = []
        for i, text in enumerate(CONTENT_FREE):
            choices = tuple(text for _ in range(n)) if choices_are_content else ex.choices
            assert choices is not None
            stand_ins.append(replace(ex, id=f"content-free-{n}-{i}", fields={k: text for k in ex.fields},
                                     choices=choices, label=choices[0], human_rationale=None, llm_rationale=None,
                                     llm_label=None, meta={}))
        out[n] = stand_ins
    return out


def fit_prior(scores: Sequence[Sequence[float]], gold: Sequence[int]) -> dict[int, list[float]]:
    """:func:`prior_bias` per number of options."""
    groups: dict[int, tuple[list[Sequence[float]], list[int]]] = {}
    for s, g in zip(scores, gold):
        rows, golds = groups.setdefault(len(s), ([], []))
        rows.append(s)
        golds.append(g)
    return {n: prior_bias(rows, golds) for n, (rows, golds) in groups.items()}


def calibrate_rows(scores: Sequence[Sequence[float]], biases: Mapping[int, Sequence[float]]) -> list[list[float]]:
    """Calibrated log-probabilities of each example's options; an option count without a bias
    is only normalised."""
    return [apply_bias(s, biases[len(s)]) if len(s) in biases else log_normalise(s) for s in scores]


def cross_fitted_prior_accuracy(scores: Sequence[Sequence[float]], gold: Sequence[int], folds: int = 2) -> float:
    """Accuracy of prior calibration on data it was not fitted on: each fold is calibrated with
    the bias fitted on the other folds (a validation split's honest figure for choosing it)."""
    n = len(scores)
    right = 0
    for k in range(folds):
        held = [i for i in range(n) if i % folds == k]
        fit = [i for i in range(n) if i % folds != k]
        biases = fit_prior([scores[i] for i in fit], [gold[i] for i in fit])
        calibrated = calibrate_rows([scores[i] for i in held], biases)
        right += sum(max(range(len(c)), key=c.__getitem__) == gold[i] for c, i in zip(calibrated, held))
    return right / n if n else float("nan")


def option_values(row: dict[str, Any], scoring: str) -> list[float]:
    """An answered choice row's option scores as its scoring compares them (sum or mean)."""
    sums = row.get("logprobs_raw", row["logprobs"])
    return list(sums) if scoring == "sum" else [s / max(n, 1) for s, n in zip(sums, row["lengths"])]


def fit_calibration(lm: LoadedModel, prompter: TeacherPrompter, cfg: Any, splits: dict[str, list[Example]],
                    answered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The per-option bias of ``cfg.calibration`` for every option count of the answered splits:
    from content-free prompts (contextual) or from the validation split's answers and gold labels
    (prior). Recorded in ``teacher/metrics.json``."""
    if cfg.calibration == "contextual":
        examples = [ex for split in answered for ex in splits[split]]
        biases = {}
        for n, stand_ins in content_free_examples(examples, prompter.choices_are_content).items():
            prompts = [prompter.render(ex).text for ex in stand_ins]
            scores = score_choices(lm, prompts, [prompter.candidates(ex) for ex in stand_ins], cfg.batch_size)
            rows = [{"logprobs": s, "lengths": n_} for s, n_ in zip(scores.sums, scores.lengths)]
            biases[n] = contextual_bias([option_values(r, cfg.scoring) for r in rows])
    else:
        gold = {ex.id: ex for ex in splits["validation"]}
        rows = answered["validation"]
        biases = fit_prior([option_values(r, cfg.scoring) for r in rows],
                           [gold[r["id"]].choices.index(gold[r["id"]].label) for r in rows])  # type: ignore[union-attr]
    return {"method": cfg.calibration, "bias": {str(n): [round(b, 5) for b in bias] for n, bias in biases.items()}}


def calibrate_answers(rows: list[dict[str, Any]], examples: list[Example], prompter: TeacherPrompter,
                      calibration: dict[str, Any], scoring: str) -> list[dict[str, Any]]:
    """``rows`` answered again under ``calibration``: ``logprobs`` become the calibrated
    log-probabilities of the options (what soft-label students learn), the answer their best
    option; the raw scores and the uncalibrated answer are kept (``logprobs_raw``,
    ``answer_uncalibrated``)."""
    by_id = {ex.id: ex for ex in examples}
    biases = {int(n): bias for n, bias in calibration["bias"].items()}
    out = []
    for row in rows:
        ex = by_id[row["id"]]
        [calibrated] = calibrate_rows([option_values(row, scoring)], biases)
        pick = max(range(len(calibrated)), key=calibrated.__getitem__)
        answer = ex.choices[pick]  # type: ignore[index]
        out.append({**row, "answer": answer, "target": prompter.candidates(ex)[pick],
                    "correct": None if ex.label is None else exact_match(answer, ex),  # None: the pool
                    "answer_uncalibrated": row["answer"],
                    "logprobs": [round(v, 4) for v in calibrated],
                    "logprobs_raw": row.get("logprobs_raw", row["logprobs"])})
    return out
