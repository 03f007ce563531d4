"""Analysis of a rationale store: answer containment, overlap with human rationales, HTML pages."""

from ..data.stopwords import STOPWORDS
from .html import render_html, render_prompt, write_html
from .overlap import contains_answer, normalise_words, summarise, teacher_was_correct, token_prf

__all__ = [
    "STOPWORDS",
    "contains_answer",
    "normalise_words",
    "render_html",
    "render_prompt",
    "summarise",
    "teacher_was_correct",
    "token_prf",
    "write_html",
]
