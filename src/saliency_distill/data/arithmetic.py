"""A small, safe arithmetic evaluator for SVAMP-style equations such as ``( 84.0 / 2.0 )``.

Numbers, + - * /, unary minus and parentheses; nothing else is accepted (no ``eval``).
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")


class ArithmeticError_(ValueError):
    """The text is not a well-formed arithmetic expression."""


def _tokens(text: str) -> list[str]:
    out = []
    for number, op in _TOKEN.findall(text):
        if number:
            out.append(number)
        elif op.strip():
            if op not in "+-*/()":
                raise ArithmeticError_(f"unexpected character {op!r} in {text!r}")
            out.append(op)
    return out


def evaluate(text: str) -> float:
    """Value of an arithmetic expression; raises ArithmeticError_ on anything else."""
    toks = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(toks):
            raise ArithmeticError_(f"unexpected end of {text!r}")
        pos += 1
        return toks[pos - 1]

    def expr() -> float:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    def term() -> float:
        value = factor()
        while peek() in ("*", "/"):
            if take() == "*":
                value *= factor()
            else:
                divisor = factor()
                if divisor == 0:
                    raise ArithmeticError_(f"division by zero in {text!r}")
                value /= divisor
        return value

    def factor() -> float:
        tok = take()
        if tok == "-":
            return -factor()
        if tok == "+":
            return factor()
        if tok == "(":
            value = expr()
            if take() != ")":
                raise ArithmeticError_(f"unbalanced parentheses in {text!r}")
            return value
        try:
            return float(tok)
        except ValueError:
            raise ArithmeticError_(f"expected a number, got {tok!r} in {text!r}") from None

    if not toks:
        raise ArithmeticError_("empty expression")
    value = expr()
    if pos != len(toks):
        raise ArithmeticError_(f"trailing {toks[pos]!r} in {text!r}")
    return value
