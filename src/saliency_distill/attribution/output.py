"""What an attribution method returns, per batch and per example."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


class MethodOutput(NamedTuple):
    scores: torch.Tensor  # (B, T) one score per input position (only prompt positions are used)
    logprob: torch.Tensor  # (B,) log p(answer | prompt), the attributed quantity
    baseline_logprob: torch.Tensor | None = None  # (B,) at the IG baseline, for completeness


@dataclass(frozen=True)
class TokenScores:
    """Scores of one example's prompt tokens; offsets are character spans in the prompt."""

    id: str
    prompt: str
    answer: str
    token_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    scores: tuple[float, ...]
    logprob: float
    baseline_logprob: float | None = None

    def __post_init__(self) -> None:
        if not (len(self.token_ids) == len(self.offsets) == len(self.scores)):
            raise ValueError(
                f"example {self.id}: {len(self.token_ids)} tokens, {len(self.offsets)} offsets and "
                f"{len(self.scores)} scores differ"
            )

    @property
    def completeness_gap(self) -> float | None:
        """|sum(scores) - (f(x) - f(baseline))| / |f(x) - f(baseline)| (integrated gradients)."""
        if self.baseline_logprob is None:
            return None
        delta = self.logprob - self.baseline_logprob
        return abs(sum(self.scores) - delta) / max(abs(delta), 1e-12)
