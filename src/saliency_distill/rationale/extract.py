"""Top-k word selection: the rationale is the k highest-scoring content words, in input order."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..config import field
from ..data.stopwords import STOPWORDS
from ..errors import ConfigError
from .words import Word, content_words


@dataclass(frozen=True)
class RationaleConfig:
    k: float = field(
        5, "rationale size: an absolute number of words (>= 1) or a fraction of content words (< 1)"
    )
    rank_by: Literal["abs", "signed"] = field(
        "abs", "rank words by |score| (influence either way) or by signed score (support only)"
    )
    drop_stopwords: bool = field(True, "never choose English stopwords")
    unique: bool = field(True, "choose each word (case-insensitive) at most once")

    def __post_init__(self) -> None:
        if self.k <= 0 or (self.k >= 1 and self.k != int(self.k)):
            raise ConfigError(
                f"config key 'rationale.k': {self.k} must be a whole number >= 1 or a fraction in (0, 1)"
            )


def select(words: Sequence[Word], cfg: RationaleConfig) -> list[Word]:
    """The chosen rationale words, in input order."""
    candidates = [w for w in words if not (cfg.drop_stopwords and w.text.lower() in STOPWORDS)]
    if cfg.unique:
        best: dict[str, Word] = {}
        for w in candidates:
            key = w.text.lower()
            if key not in best or _rank(w, cfg) > _rank(best[key], cfg):
                best[key] = w
        candidates = [w for w in candidates if best[w.text.lower()] is w]
    k = int(cfg.k) if cfg.k >= 1 else max(1, math.ceil(cfg.k * len(words)))
    chosen = sorted(candidates, key=lambda w: (-_rank(w, cfg), w.start))[:k]
    return sorted(chosen, key=lambda w: w.start)


def _rank(w: Word, cfg: RationaleConfig) -> float:
    return abs(w.score) if cfg.rank_by == "abs" else w.score


def random_rationales(
    task: Any, task_cfg: Any, examples: Sequence[Any], cfg: RationaleConfig, seed: int
) -> dict[str, str]:
    """A control for saliency rationales: per example, k of its content words drawn at random.

    The candidates and the selection rules (stopwords, uniqueness, k) are those of :func:`select`;
    only the scores are random, drawn from a generator seeded by ``seed`` and the example id, so a
    (seed, example) pair always gets the same words whatever else is in the split.
    """
    out = {}
    for ex in examples:
        prompt = task.render(ex, task_cfg)
        rng = random.Random(f"{seed}:{ex.id}")
        words = [Word(text, start, end, rng.random()) for text, start, end in
                 content_words(prompt.text, prompt.content_spans)]
        out[ex.id] = " ".join(w.text for w in select(words, cfg))
    return out


def reselect(rows: Sequence[dict[str, Any]], cfg: RationaleConfig) -> dict[str, str]:
    """Rationales chosen again from rationale-store rows' word scores under ``cfg`` (another k or
    ranking): id -> the words joined by spaces. No attribution is re-run."""
    return {r["id"]: reselect_row(r, cfg)["rationale"] for r in rows}


def reselect_row(row: dict[str, Any], cfg: RationaleConfig) -> dict[str, Any]:
    """A rationale-store row with its ``rationale_words`` and ``rationale`` chosen again under
    ``cfg`` from its word scores (without the row's ``config_hash``)."""
    chosen = select([Word(t, s, e, sc) for t, sc, s, e in row["words"]], cfg)
    out = {k: v for k, v in row.items() if k != "config_hash"}
    return {**out, "rationale_words": [w.text for w in chosen], "rationale": " ".join(w.text for w in chosen)}
