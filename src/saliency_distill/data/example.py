"""Examples and rendered prompts.

An :class:`Example` is one task instance as read from its source; a :class:`Prompt` is its text
as a model sees it, with the character spans that hold the task's own content (question,
premise, choices...) as opposed to template words ("Question:", "(a)", "Answer:"). Attribution
later keeps only words inside content spans, so template words can never become rationales.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError


@dataclass(frozen=True)
class Example:
    id: str
    fields: dict[str, str]  # content fields in display order, e.g. {"question": ...}
    label: str  # gold answer text (a choice, a label word, or an equation); None in the pool
    choices: tuple[str, ...] | None = None  # answer options; None for free-form tasks
    human_rationale: str | None = None
    llm_rationale: str | None = None
    llm_label: str | None = None  # the LLM's own answer, parsed from its completion
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fields": dict(self.fields),
            "label": self.label,
            "choices": list(self.choices) if self.choices is not None else None,
            "human_rationale": self.human_rationale,
            "llm_rationale": self.llm_rationale,
            "llm_label": self.llm_label,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        choices = d.get("choices")
        return cls(
            id=str(d["id"]),
            fields=dict(d["fields"]),
            label=d.get("label"),  # a pool example has none
            choices=tuple(choices) if choices is not None else None,
            human_rationale=d.get("human_rationale"),
            llm_rationale=d.get("llm_rationale"),
            llm_label=d.get("llm_label"),
            meta=dict(d.get("meta") or {}),
        )


def make_example(
    where: str,
    id: str,  # noqa: A002
    fields: dict[str, Any],
    label: Any,
    choices: list[Any] | tuple[Any, ...] | None = None,
    **extra: Any,
) -> Example:
    """Validate raw values into an Example; errors name ``where`` (file:line or row)."""
    clean: dict[str, str] = {}
    for name, value in fields.items():
        if value is None or not isinstance(value, (str, int, float)) or not str(value).strip():
            raise DataError(f"{where}: content field '{name}' is empty or not text")
        clean[name] = str(value).strip()
    if choices is not None:
        if not isinstance(choices, (list, tuple)) or len(choices) < 2:
            raise DataError(f"{where}: choices must be a list of at least 2 options")
        choices = tuple(str(c).strip() for c in choices)
        if any(not c for c in choices):
            raise DataError(f"{where}: a choice is empty")
        if isinstance(label, int) and not isinstance(label, bool):
            if not 0 <= label < len(choices):
                raise DataError(f"{where}: label index {label} is out of range for {len(choices)} choices")
            label = choices[label]
        label = str(label).strip() if label is not None else ""
        if label not in choices:
            raise DataError(f"{where}: label {label!r} is not among the choices {list(choices)}")
    else:
        label = str(label).strip() if label is not None else ""
    if not label:
        raise DataError(f"{where}: label is missing or empty")
    return Example(id=str(id), fields=clean, label=label, choices=choices, **extra)


@dataclass(frozen=True)
class Prompt:
    text: str
    content_spans: tuple[tuple[int, int], ...]  # [start, end) character spans of task content
    span_fields: tuple[str, ...]  # the field each span came from: "question", "choice:2", ...

    def __post_init__(self) -> None:
        if len(self.content_spans) != len(self.span_fields):
            raise ValueError("content_spans and span_fields differ in length")
        last = 0
        for start, end in self.content_spans:
            if not (last <= start <= end <= len(self.text)):
                raise ValueError(f"content span {(start, end)} is out of order or out of range")
            last = end

    def content(self) -> list[str]:
        return [self.text[s:e] for s, e in self.content_spans]


CHOICE_LETTERS = string.ascii_lowercase
# How options are shown in a prompt: a student records these with its weights, so that anyone can
# rebuild its prompt without this package.
CHOICE_FORMAT = "({letter}) {choice}"
CHOICE_SEPARATOR = "\n"


def render(
    template: str,
    example: Example,
    choice_format: str = CHOICE_FORMAT,
    choice_sep: str = CHOICE_SEPARATOR,
    choices_are_content: bool = True,
) -> Prompt:
    """Fill ``template`` (``{field}`` and ``{choices}`` placeholders) and record content spans.

    Literal template text is never content; every substituted field value is, and so is each
    choice's text (but not its "(a)" marker) unless ``choices_are_content`` is false (a closed
    label set shown as options, such as NLI's three labels, is template).
    """
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    names: list[str] = []
    pos = 0

    def emit(text: str, content_name: str | None = None) -> None:
        nonlocal pos
        if content_name is not None and text:
            spans.append((pos, pos + len(text)))
            names.append(content_name)
        parts.append(text)
        pos += len(text)

    for literal, name, spec, conv in string.Formatter().parse(template):
        emit(literal)
        if name is None:
            continue
        if spec or conv:
            raise DataError(f"template placeholder '{{{name}}}' must not have a format spec")
        if name == "choices":
            if not example.choices:
                raise DataError(f"example {example.id}: template uses {{choices}} but it has none")
            for i, choice in enumerate(example.choices):
                if i:
                    emit(choice_sep)
                before, _, after = choice_format.partition("{choice}")
                emit(before.format(letter=CHOICE_LETTERS[i], index=i + 1))
                emit(choice, f"choice:{i}" if choices_are_content else None)
                emit(after.format(letter=CHOICE_LETTERS[i], index=i + 1))
        elif name in example.fields:
            emit(example.fields[name], name)
        else:
            raise DataError(
                f"example {example.id}: template field '{{{name}}}' is not one of "
                f"{sorted(example.fields) + ['choices']}"
            )
    return Prompt("".join(parts), tuple(spans), tuple(names))
