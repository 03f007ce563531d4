"""Teacher: optional fine-tuning, answers by choice log-likelihood or greedy generation."""

from .answer import TeacherConfig, answer_examples, is_correct, read_answers, teach
from .generate import generate_answers
from .scoring import ChoiceScores, score_choices, sequence_logprobs

__all__ = [
    "ChoiceScores",
    "TeacherConfig",
    "answer_examples",
    "generate_answers",
    "is_correct",
    "read_answers",
    "score_choices",
    "sequence_logprobs",
    "teach",
]
