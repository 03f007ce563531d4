"""Saliency-guided consistency: the input with its least salient content words dropped.

After Ismail et al. (NeurIPS 2021, saliency-guided training) and the consistency training of
Lowell et al. (EMNLP 2020): beside the label loss, the student reads each training input a second
time with some of its content words dropped, and is trained to give the same distribution over
the options as on the whole input (a KL term, the whole input's side held fixed). The words
dropped are the ``fraction`` of content words that the teacher's attribution scored lowest
(``saliency-consistency``), or as many drawn at random (``random-consistency``, the control).
Words are dropped from the input fields only, never from the listed options, whose texts are
what the student scores.

Words are the content words of the student's own rendering of the example
(:func:`~saliency_distill.rationale.words.content_words`); a rationale-store row scores the words
of the teacher's prompt, which holds the same content in the same order, so the two lists are
aligned word by word (a store word that the student's text lacks is skipped).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from ..data import Example, Task, TaskConfig
from ..errors import ConfigError, DataError
from ..rationale.words import content_words

MASKS = ("saliency", "random")


def dropped_count(n_words: int, fraction: float) -> int:
    """Words dropped from an input of ``n_words`` content words: ``fraction`` of them rounded up,
    never all of them (at least one is kept) and none from an input of one word."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"config key 'student.mask_fraction': {fraction} must be between 0 and 1 (exclusive)")
    return min(math.ceil(fraction * n_words), max(n_words - 1, 0))


def drop_words(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the character ``spans``, each with the spaces that follow it or, where
    none do (before punctuation, at a line's end), those that precede it; the rest as it was."""
    out, last = [], 0
    for start, end in sorted(spans):
        if start < last:
            raise ValueError(f"overlapping word spans at {start}")
        if end < len(text) and text[end] == " ":
            while end < len(text) and text[end] == " ":
                end += 1
        else:
            while start > last and text[start - 1] == " ":
                start -= 1
        out.append(text[last:start])
        last = end
    out.append(text[last:])
    return "".join(out)


def aligned_scores(words: Sequence[str], row: Mapping[str, Any]) -> list[float]:
    """The store row's score of each of ``words`` (the student's content words, in order): the
    row's words are walked in order and matched by text; a word never matched scores +inf (kept)."""
    scored = [(str(w[0]), abs(float(w[1]))) for w in row.get("words") or ()]
    out, j = [], 0
    for word in words:
        k = j
        while k < len(scored) and scored[k][0] != word:
            k += 1
        if k < len(scored):
            out.append(scored[k][1])
            j = k + 1
        else:
            out.append(math.inf)
    return out


def masked_inputs(
    task: Task, task_cfg: TaskConfig, examples: Sequence[Example], how: str, fraction: float, seed: int,
    rows: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """Per example id, its rendered input with the dropped words removed. ``how``: ``saliency``
    drops the words the store ``rows`` score lowest (by absolute score; ties by position), ``random``
    as many drawn from a generator seeded by ``seed`` and the example id."""
    if how not in MASKS:
        raise ConfigError(f"unknown consistency mask {how!r} (choose from: {', '.join(MASKS)})")
    out = {}
    for ex in examples:
        prompt = task.render(ex, task_cfg)
        spans = [span for span, name in zip(prompt.content_spans, prompt.span_fields) if not name.startswith("choice")]
        words = content_words(prompt.text, spans)  # the options stay whole: they are what is scored
        n = dropped_count(len(words), fraction)
        if how == "saliency":
            if rows is None or ex.id not in rows:
                raise DataError(f"example {ex.id}: no rationale-store row (run `saliency-distill attribute`)")
            scores = aligned_scores([w for w, _, _ in words], rows[ex.id])
            chosen = sorted(range(len(words)), key=lambda i: (scores[i], i))[:n]
        else:
            chosen = random.Random(f"{seed}:{ex.id}:mask").sample(range(len(words)), n)
        out[ex.id] = drop_words(prompt.text, [(words[i][1], words[i][2]) for i in chosen])
    return out
