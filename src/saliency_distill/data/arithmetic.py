"""A small, safe arithmetic parser for SVAMP-style equations such as ``( 84.0 / 2.0 )``.

Numbers, + - * /, unary minus and parentheses; nothing else is accepted (no ``eval``).
:func:`parse` builds a tree, :func:`evaluate` computes it and :func:`show` prints it back in the
SVAMP dataset's own style: every binary operation in parentheses, numbers as decimals
(``( ( 17.0 + 15.0 ) + 2.0 )``), so two ways of writing one equation print the same.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")

# A tree: a number, ("neg", operand) or (operator, left, right).
Node = float | tuple


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


def parse(text: str) -> Node:
    """The tree of an arithmetic expression; raises ArithmeticError_ on anything else."""
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

    def expr() -> Node:
        node = term()
        while peek() in ("+", "-"):
            node = (take(), node, term())
        return node

    def term() -> Node:
        node = factor()
        while peek() in ("*", "/"):
            node = (take(), node, factor())
        return node

    def factor() -> Node:
        tok = take()
        if tok == "-":
            return ("neg", factor())
        if tok == "+":
            return factor()
        if tok == "(":
            node = expr()
            if take() != ")":
                raise ArithmeticError_(f"unbalanced parentheses in {text!r}")
            return node
        try:
            return float(tok)
        except ValueError:
            raise ArithmeticError_(f"expected a number, got {tok!r} in {text!r}") from None

    if not toks:
        raise ArithmeticError_("empty expression")
    node = expr()
    if pos != len(toks):
        raise ArithmeticError_(f"trailing {toks[pos]!r} in {text!r}")
    return node


def value(node: Node, text: str = "") -> float:
    """The value of a tree from :func:`parse`; division by zero raises ArithmeticError_."""
    if isinstance(node, float):
        return node
    if node[0] == "neg":
        return -value(node[1], text)
    op, left, right = node[0], value(node[1], text), value(node[2], text)
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        raise ArithmeticError_(f"division by zero in {text!r}")
    return left / right


def evaluate(text: str) -> float:
    """Value of an arithmetic expression; raises ArithmeticError_ on anything else."""
    return value(parse(text), text)


def _number(x: float) -> str:
    shown = repr(x)  # "84.0", "0.5"; positional notation instead of "1e-07"
    if "e" in shown:
        shown = f"{x:.15f}".rstrip("0")
        shown += "0" if shown.endswith(".") else ""
    return shown


def show(node: Node) -> str:
    """A tree printed in SVAMP's style: ``( ( 17.0 + 15.0 ) + 2.0 )``; ``( - 3.0 )`` for unary minus."""
    if isinstance(node, float):
        return _number(node)
    if node[0] == "neg":
        return f"( - {show(node[1])} )"
    return f"( {show(node[1])} {node[0]} {show(node[2])} )"
