"""Top-k word selection: the rationale is the k highest-scoring content words, in input order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..analysis.stopwords import STOPWORDS
from ..config import field
from ..errors import ConfigError
from .words import Word


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
