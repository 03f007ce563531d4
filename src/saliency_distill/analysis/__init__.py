"""Analysis of a rationale store: answer containment, overlap with human rationales, faithfulness
(with the teacher, opt-in), HTML pages."""

from ..data.stopwords import STOPWORDS
from .config import AnalysisConfig
from .faithfulness import edit_prompt, memoized, score_rows, summarise_faithfulness, teacher_scorer
from .html import render_html, render_prompt, write_html
from .overlap import contains_answer, normalise_words, summarise, teacher_was_correct, token_prf
from .stage import faithfulness_stage

__all__ = [
    "STOPWORDS",
    "AnalysisConfig",
    "contains_answer",
    "edit_prompt",
    "faithfulness_stage",
    "memoized",
    "normalise_words",
    "render_html",
    "render_prompt",
    "score_rows",
    "summarise",
    "summarise_faithfulness",
    "teacher_scorer",
    "teacher_was_correct",
    "token_prf",
    "write_html",
]
