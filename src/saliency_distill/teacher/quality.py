"""Is the teacher worth distilling? Accuracy with a 95% interval, the answer distribution, the
recall of every gold class (and a confusion matrix for a label set), a warning when one answer
takes most of a split (a collapsed teacher teaches nothing) and one when a gold class is
predicted at under a third of its gold share (students distilled from it rarely see that class).

A student learns what its teacher gives it, so these figures go into ``teacher/metrics.json``
and the printed summary before any student trains.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..data import Example
from ..data.example import CHOICE_LETTERS
from .prompt import label_set

COLLAPSE_SHARE = 0.8  # one answer above this share of a split is a collapsed teacher
TOP_FREE_ANSWERS = 5  # free-form answers: how many of the most common are listed
UNDER_PREDICTED = 1 / 3  # a gold class predicted at under this fraction of its gold share is warned about
MAX_CONFUSION_CLASSES = 10  # label sets up to this size get a confusion matrix
NO_ANSWER = "(no answer)"  # a free-form answer that held none (e.g. no equation)


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% for z = 1.96); (nan, nan) when n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def answer_key(example: Example, answer: str | None, shared: bool) -> str:
    """What the distribution counts: the label for a closed label set (NLI), the option's
    position "(a)".. for per-question choices (CQA), the answer itself for free-form tasks."""
    if answer is None:
        return NO_ANSWER
    if example.choices is None:
        return answer
    if shared or answer not in example.choices:
        return answer
    return f"({CHOICE_LETTERS[example.choices.index(answer)]})"


def answer_quality(rows: Sequence[dict[str, Any]], examples: Sequence[Example]) -> dict[str, Any]:
    """Accuracy, its 95% interval, the answer / gold distributions and, for choice tasks, the
    recall per gold class (label, or option position) of one split's rows."""
    by_id = {ex.id: ex for ex in examples}
    shared = label_set(examples) is not None
    if any(ex.label is None for ex in examples):  # the pool: no labels, so the answers alone
        return pool_quality(rows, by_id, shared)
    answers: Counter[str] = Counter()
    gold: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    confusion: dict[str, Counter[str]] = {}
    correct = 0
    for row in rows:
        ex = by_id[row["id"]]
        said, truth = answer_key(ex, row["answer"], shared), answer_key(ex, ex.label, shared)
        answers[said] += 1
        gold[truth] += 1
        hits[truth] += bool(row["correct"])
        confusion.setdefault(truth, Counter())[said] += 1
        correct += bool(row["correct"])
    n = len(rows)
    low, high = wilson_interval(correct, n)
    top, top_n = answers.most_common(1)[0] if answers else (None, 0)
    free = bool(examples) and examples[0].choices is None
    listed = answers.most_common(TOP_FREE_ANSWERS) if free else sorted(answers.items())
    out = {
        "accuracy": correct / n if n else float("nan"),
        "n": n,
        "ci95": [round(low, 4), round(high, 4)],
        "answer_distribution": dict(listed),
        "gold_distribution": {} if free else dict(sorted(gold.items())),
        "majority_share": max(gold.values()) / n if n and not free else None,
        "top_answer": top,
        "top_answer_share": top_n / n if n else None,
        "collapsed": bool(n) and top_n / n > COLLAPSE_SHARE,
    }
    if free:
        out["no_answer"] = answers[NO_ANSWER]
        return out
    out["recall"] = {c: round(hits[c] / gold[c], 4) for c in sorted(gold)}
    out["under_predicted"] = [c for c in sorted(gold) if answers[c] < UNDER_PREDICTED * gold[c]]
    if shared and len(examples[0].choices or ()) <= MAX_CONFUSION_CLASSES:
        out["confusion"] = {c: {p: confusion[c][p] for p in sorted(set(answers) | set(gold)) if confusion[c][p]}
                            for c in sorted(gold)}
    return out


def pool_quality(rows: Sequence[dict[str, Any]], by_id: dict[str, Example], shared: bool) -> dict[str, Any]:
    """The answer distribution of inputs without labels (the pool), and whether it collapsed."""
    answers = Counter(answer_key(by_id[row["id"]], row["answer"], shared) for row in rows)
    n = len(rows)
    top, top_n = answers.most_common(1)[0] if answers else (None, 0)
    free = bool(by_id) and next(iter(by_id.values())).choices is None
    listed = answers.most_common(TOP_FREE_ANSWERS) if free else sorted(answers.items())
    out = {"n": n, "answer_distribution": dict(listed), "top_answer": top,
           "top_answer_share": top_n / n if n else None, "collapsed": bool(n) and top_n / n > COLLAPSE_SHARE}
    if free:
        out["no_answer"] = answers[NO_ANSWER]
    return out


def class_warnings(split: str, quality: dict[str, Any]) -> list[str]:
    """One line per gold class that the teacher predicts at under a third of its gold share."""
    n = quality.get("n") or 0
    out = []
    for c in quality.get("under_predicted") or ():
        said = quality["answer_distribution"].get(c, 0)
        share = quality["gold_distribution"][c]
        out.append(
            f"warning: the teacher answers {c!r} for {said / n:.1%} of the {split} split where the gold share is "
            f"{share / n:.1%} (recall {quality['recall'][c]:.1%}): students distilled from it rarely see that "
            "class (check teacher.shots and teacher.demonstrations, or set teacher.calibration)"
        )
    return out


def collapse_warning(split: str, quality: dict[str, Any]) -> str | None:
    """A one-line warning for a collapsed teacher, else None."""
    if not quality.get("collapsed"):
        return None
    accuracy = f" (accuracy {quality['accuracy']:.1%})" if "accuracy" in quality else ""
    return (
        f"warning: the teacher answers {quality['top_answer']!r} for {quality['top_answer_share']:.0%} of "
        f"the {split} split{accuracy}: a collapsed teacher; students "
        f"distilled from it learn little (check teacher.format and teacher.shots, or use another teacher)"
    )
