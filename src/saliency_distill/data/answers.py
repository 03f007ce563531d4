"""Is a predicted answer right? The one rule shared by the teacher's and the student's accuracy.

Choice and label tasks compare normalised text, so "(b) Table." counts as "table". Free-form
arithmetic tasks (SVAMP) compare values: "(84 / 2)" and "21 * 2" are both right when the gold
answer is 42. Equations are read by the small parser in :mod:`saliency_distill.data.arithmetic`,
never by ``eval``.
"""

from __future__ import annotations

import re
import string

from ..errors import DataError
from .arithmetic import ArithmeticError_, evaluate, parse, show
from .example import Example

TOLERANCE = 1e-4

# Signs, percent and currency carry meaning at the edge of an answer ("-5" is not "5"); every
# other punctuation mark there is decoration, as are typographic quotes and markdown emphasis.
_EDGE_CHARS = "".join(c for c in string.punctuation if c not in "-+%$") + "“”‘’«»"
# "(a) x", "a) x", "a: x": the marker a model copies from a rendered list of choices. Only a
# single letter followed by ")" or ":" counts, so answers like "a cat" keep their article.
_CHOICE_MARKER = re.compile(r"^\(?[a-z]\)\s*|^[a-z]:\s*")


def normalise_answer(text: str) -> str:
    """Lowercase, collapse whitespace, drop edge punctuation/quotes and a leading choice marker."""
    text = " ".join(text.lower().split())
    text = text.strip(_EDGE_CHARS).strip()
    without_marker = _CHOICE_MARKER.sub("", text, count=1)
    if without_marker:  # a bare "b)" stays "b": the letter is the whole answer
        text = without_marker
    return text.strip(_EDGE_CHARS).strip()


def is_arithmetic(example: Example) -> bool:
    """A free-form task whose gold answer is a number reached by an equation (SVAMP)."""
    return example.choices is None and "answer" in example.meta


_LEADING_ARITHMETIC = re.compile(r"^[\d.+\-*/()\s]+")


def _leading_expression(text: str) -> str | None:
    """The part of ``text`` that :func:`equation_value` reads as the equation, or None."""
    if text.count("=") == 1:
        text = text.split("=", 1)[0]
    try:
        evaluate(text)
        return text
    except (ArithmeticError_, RecursionError):  # deep nesting must not crash an evaluation run
        pass
    match = _LEADING_ARITHMETIC.match(text)
    lead = match.group(0).rstrip() if match else ""
    while lead:
        if any(c.isdigit() for c in lead):
            try:
                evaluate(lead)
                return lead
            except (ArithmeticError_, RecursionError):
                pass
        lead = lead[:-1].rstrip()
    return None


def equation_value(text: str) -> float | None:
    """The value of an arithmetic expression, or None when it is not one.

    A worked equation "30 * 7 = 210" counts as its left-hand side, the expression: the value
    written after "=" is never trusted on its own. An expression that runs on into words
    ("( 7.0 * 30.0 )Human: ...", "( 4.0 - 1.0 ) ) )") counts as its longest leading part that is
    a whole expression; words alone are not an answer.
    """
    expression = _leading_expression(text)
    return None if expression is None else evaluate(expression)


def canonical_equation(text: str) -> str | None:
    """The equation that :func:`equation_value` reads in ``text``, printed in SVAMP's style
    (``"( 17.0 + 15.0 + 2.0 )Human: ..."`` -> ``"( ( 17.0 + 15.0 ) + 2.0 )"``), or None when
    ``text`` holds no equation. Its value is ``equation_value(text)``."""
    expression = _leading_expression(text)
    return None if expression is None else show(parse(expression))


def exact_match(prediction: str, example: Example) -> bool:
    """Whether ``prediction`` answers ``example``: by value for equations, else by normalised text."""
    if not is_arithmetic(example):
        return normalise_answer(prediction) == normalise_answer(example.label)
    try:
        gold = float(example.meta["answer"])
    except (TypeError, ValueError):
        raise DataError(f"example {example.id}: meta answer {example.meta['answer']!r} is not a number") from None
    value = equation_value(prediction)
    return value is not None and abs(value - gold) < TOLERANCE
