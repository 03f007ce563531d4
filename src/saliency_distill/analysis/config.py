"""The analyze stage's options. Everything but faithfulness reads the rationale stores only."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import field
from ..errors import ConfigError


@dataclass(frozen=True)
class AnalysisConfig:
    faithfulness: bool = field(
        False,
        "also measure the rationales' faithfulness with the teacher (forward passes only, so the teacher is "
        "loaded): comprehensiveness = log p(answer | prompt) - log p(answer | prompt without the rationale "
        "words), higher = more necessary; sufficiency = log p(answer | prompt) - log p(answer | prompt with "
        "only the rationale words of its content), lower = more sufficient; each against as many random "
        "content words",
    )
    faithfulness_max_examples: int | None = field(
        None, "faithfulness: score only the first N rows of each split's rationale store (null: all)"
    )
    faithfulness_seed: int = field(
        0, "faithfulness: seed of the random-words baseline (drawn per example from the seed and its id)"
    )

    def __post_init__(self) -> None:
        if self.faithfulness_max_examples is not None and self.faithfulness_max_examples < 1:
            raise ConfigError(
                f"config key 'analysis.faithfulness_max_examples': {self.faithfulness_max_examples} must be >= 1"
            )
