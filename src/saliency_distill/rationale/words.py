"""From token scores to word scores.

Words are found in the prompt text itself (runs of letters/digits, with inner apostrophes or
hyphens), inside the task's content spans only: template words ("Question", "Answer Choices",
"(a)") and special tokens (empty offsets) never become words, and punctuation is not a word.
A token's score goes to every word its character span overlaps, in proportion to the overlap,
so a word split into sub-word tokens gets the sum of its pieces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"\w+(?:['’\-]\w+)*")


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # character span in the prompt
    end: int
    score: float


def content_words(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """(word, start, end) for every word inside the content spans, in text order."""
    out = []
    for s, e in spans:
        for m in _WORD.finditer(text, s, e):
            out.append((m.group(), m.start(), m.end()))
    return out


def word_scores(
    text: str,
    spans: Sequence[tuple[int, int]],
    offsets: Sequence[tuple[int, int]],
    scores: Sequence[float],
) -> list[Word]:
    """Sum token scores into the content words they overlap."""
    words = content_words(text, spans)
    totals = [0.0] * len(words)
    starts = [w[1] for w in words]
    for (ts, te), score in zip(offsets, scores):
        if te <= ts:
            continue  # special token: no characters
        # Words are sorted and disjoint: walk from the first that could overlap.
        lo, hi = 0, len(words)
        while lo < hi:
            mid = (lo + hi) // 2
            if words[mid][2] <= ts:
                lo = mid + 1
            else:
                hi = mid
        i = lo
        while i < len(words) and starts[i] < te:
            _, ws, we = words[i]
            overlap = min(te, we) - max(ts, ws)
            if overlap > 0:
                # Characters of the token outside any word (a leading space, punctuation) are
                # not counted: the share is overlap / characters of the token inside words.
                totals[i] += score * overlap / _inside(ts, te, words, lo)
            i += 1
    return [Word(w, s, e, t) for (w, s, e), t in zip(words, totals)]


def _inside(ts: int, te: int, words: list[tuple[str, int, int]], first: int) -> int:
    n = 0
    for _, ws, we in words[first:]:
        if ws >= te:
            break
        n += max(0, min(te, we) - max(ts, ws))
    return max(n, 1)
