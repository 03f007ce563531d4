"""How rationales relate to answers and to human rationales: word overlap, nothing learned.

Everything here compares bags of lowercase word tokens. A "word" is a run of ``\\w``
characters with optional internal apostrophes ("don't", "teacher's"), so punctuation never
counts. Stopwords (:data:`~saliency_distill.data.stopwords.STOPWORDS`) are dropped where
noted, so that "the" in a rationale never makes it "contain" the answer "the park".

Rows are rationale-store rows (one JSON object per example): ``id``, ``teacher_answer``,
``gold``, ``teacher_correct``, ``rationale_words`` and so on; see :func:`summarise`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Example
from ..data.stopwords import STOPWORDS

logger = logging.getLogger(__name__)

_WORD_RE = re.compile(r"\w+(?:['\u2019]\w+)*")


def normalise_words(text: str, drop_stopwords: bool = True) -> list[str]:
    """Lowercase word tokens of ``text`` in order, optionally without English stopwords.

    Curly apostrophes become ASCII ones, so "don\u2019t" and "don't" are the same word.
    """
    words = [m.group(0).lower().replace("\u2019", "'") for m in _WORD_RE.finditer(text)]
    if drop_stopwords:
        words = [w for w in words if w not in STOPWORDS]
    return words


def _answer_words(answer: str) -> set[str]:
    """Content words of an answer; all its words when it has only stopwords ("it", "up")."""
    return set(normalise_words(answer)) or set(normalise_words(answer, drop_stopwords=False))


def _rationale_tokens(rationale_words: Sequence[str], drop_stopwords: bool) -> list[str]:
    # A rationale "word" may itself hold several tokens (a hyphenated or glued word).
    return [t for w in rationale_words for t in normalise_words(w, drop_stopwords=drop_stopwords)]


def contains_answer(rationale_words: Sequence[str], answer: str) -> bool:
    """True when the rationale holds at least one word of ``answer`` (case-insensitive).

    Only the answer's non-stopword words count, unless it has nothing but stopwords, in which
    case all of them do. An empty answer is never contained.
    """
    wanted = _answer_words(answer or "")
    if not wanted:
        return False
    return not wanted.isdisjoint(_rationale_tokens(rationale_words, drop_stopwords=False))


def token_prf(predicted: Sequence[str], reference: str) -> tuple[float, float, float]:
    """Set-based token precision, recall and F1 of rationale words against a human rationale.

    Both sides are reduced to sets of lowercase non-stopword words. Convention for empty
    inputs: precision is 0.0 when the prediction has no content words, recall is 0.0 when the
    reference has none, and F1 is 0.0 when precision + recall is 0.
    """
    pred = set(_rationale_tokens(predicted, drop_stopwords=True))
    ref = set(normalise_words(reference))
    hits = len(pred & ref)
    precision = hits / len(pred) if pred else 0.0
    recall = hits / len(ref) if ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f1


def _percent(flags: Sequence[bool]) -> dict[str, Any]:
    """``{"n": count, "percent": share true in %}``; percent is None (JSON null) when n is 0."""
    n = len(flags)
    return {"n": n, "percent": round(100.0 * sum(flags) / n, 2) if n else None}


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def teacher_was_correct(row: Mapping[str, Any], gold: str) -> bool:
    """The row's ``teacher_correct`` when it has one, else an exact (stripped) answer match.

    The store's own flag wins because its writer may know task-specific equivalences
    (arithmetic results, label synonyms) that a string comparison does not.
    """
    flag = row.get("teacher_correct")
    if isinstance(flag, bool):
        return flag
    return str(row.get("teacher_answer") or "").strip() == gold.strip()


def summarise(rows: list[dict[str, Any]], examples: dict[str, Example]) -> dict[str, Any]:
    """Headline numbers of a rationale store, as a plain JSON-able dict.

    ``examples`` maps example id to :class:`~saliency_distill.data.Example`; it supplies the
    gold answer (``Example.label``, falling back to the row's ``gold``), whether the task is
    multiple-choice (``Example.choices`` is not None, and the gold answer is among the row's
    scored ``words`` when it has them: a label set that only the template names, as in NLI,
    can never be in a rationale) and the human rationale. Rows whose id
    is missing from ``examples`` use the row's ``gold`` and count as not multiple-choice.

    Returned keys (percentages in %, rounded to 2 places; None where nothing was counted):

    - ``n_rows``;
    - ``gold_containment``: ``multiple_choice`` and ``all`` (each ``{"n", "percent"}``), and
      ``teacher_correct`` / ``teacher_incorrect``: the same over all rows, split by whether
      the teacher answered correctly;
    - ``teacher_containment``: ``multiple_choice`` and ``all``, the teacher's own answer;
    - ``teacher_accuracy``: ``{"n", "percent"}``;
    - ``human_rationale``: ``n`` rows with a human rationale and mean ``precision``,
      ``recall``, ``f1`` of the rationale words against it;
    - ``mean_rationale_words``: mean number of rationale words per row.
    """
    gold_mc: list[bool] = []
    gold_all: list[bool] = []
    gold_by_teacher: dict[bool, list[bool]] = {True: [], False: []}
    teacher_mc: list[bool] = []
    teacher_all: list[bool] = []
    correct: list[bool] = []
    prf: list[tuple[float, float, float]] = []
    lengths: list[int] = []
    missing = 0
    for row in rows:
        example = examples.get(str(row.get("id")))
        if example is None:
            missing += 1
        gold = example.label if example is not None else str(row.get("gold") or "")
        words = list(row.get("rationale_words") or [])
        # A closed label set named only by the template (NLI's entailment/neutral/contradiction)
        # is not among the attributed words, so no rationale could contain it: such rows are
        # not multiple-choice here. Rows without their scored words fall back to the choices.
        scored = [str(w[0]) for w in row.get("words") or []]
        is_mc = (example is not None and example.choices is not None
                 and (not scored or contains_answer(scored, gold)))
        has_gold = contains_answer(words, gold)
        gold_all.append(has_gold)
        if is_mc:
            gold_mc.append(has_gold)
        # Rows without a teacher answer (attribution of the gold answer, no teach stage) say
        # nothing about the teacher: they are left out of its figures rather than counted wrong.
        if row.get("teacher_answer") is not None:
            was_correct = teacher_was_correct(row, gold)
            has_teacher = contains_answer(words, str(row["teacher_answer"]))
            teacher_all.append(has_teacher)
            gold_by_teacher[was_correct].append(has_gold)
            if is_mc:
                teacher_mc.append(has_teacher)
            correct.append(was_correct)
        lengths.append(len(words))
        if example is not None and example.human_rationale and example.human_rationale.strip():
            prf.append(token_prf(words, example.human_rationale))
    if missing:
        logger.warning("%d of %d rationale rows have no matching example; using their 'gold' field", missing, len(rows))

    return {
        "n_rows": len(rows),
        "gold_containment": {
            "multiple_choice": _percent(gold_mc),
            "all": _percent(gold_all),
            "teacher_correct": _percent(gold_by_teacher[True]),
            "teacher_incorrect": _percent(gold_by_teacher[False]),
        },
        "teacher_containment": {"multiple_choice": _percent(teacher_mc), "all": _percent(teacher_all)},
        "teacher_accuracy": _percent(correct),
        "human_rationale": {
            "n": len(prf),
            "precision": _mean([p for p, _, _ in prf]),
            "recall": _mean([r for _, r, _ in prf]),
            "f1": _mean([f for _, _, f in prf]),
        },
        "mean_rationale_words": _mean(lengths),
    }


def format_difference(d: Any) -> str:
    """``+0.217 [+0.063, +0.398]``: a difference of :func:`mean_interval` and its interval; empty
    when there is none (summaries written before it existed)."""
    if not isinstance(d, dict) or not all(isinstance(d.get(k), (int, float)) for k in ("mean", "lower", "upper")):
        return ""
    return f"{d['mean']:+.3f} [{d['lower']:+.3f}, {d['upper']:+.3f}]"
