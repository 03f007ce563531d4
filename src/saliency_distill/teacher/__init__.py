"""Teacher: answers by choice log-likelihood (and, in later stages, fine-tuning and generation)."""

from .scoring import ChoiceScores, score_choices, sequence_logprobs

__all__ = ["ChoiceScores", "score_choices", "sequence_logprobs"]
