"""Evaluation: the student's accuracy on the "predict:" task, and the answer-matching rule."""

from ..data.answers import equation_value, exact_match, is_arithmetic, normalise_answer
from .evaluate import EvalConfig, evaluate_student, student_prompt, write_predictions

__all__ = [
    "EvalConfig",
    "equation_value",
    "evaluate_student",
    "exact_match",
    "is_arithmetic",
    "normalise_answer",
    "student_prompt",
    "write_predictions",
]
