"""How the teacher is asked: answer format, k-shot demonstrations and an optional chat template.

The task renders an example's prompt and marks its content spans (question, premise, option
texts). :class:`TeacherPrompter` builds what the teacher actually reads around it:

- ``format="auto"`` is ``letter`` for choice tasks and ``text`` for free-form ones.
- ``format="text"`` scores each option's text after the prompt (or generates, for free-form
  tasks); ``format="letter"`` shows the options lettered and scores the label "(a)", "(b)", ...
  For a closed label set that the task's template does not list (NLI), the labels are added as
  lettered options; they are template, not content, so they never become rationale words.
- ``shots`` demonstrations from the train split (a seeded draw, never the scored example
  itself), each a rendered prompt followed by its gold answer in the same format. Where the
  task has a label set (NLI), the draw is balanced across the labels by default: with three
  labels and three shots, one of each in a seeded order, so that the draw cannot leave a class
  out of the prompt (a 3-shot e-SNLI teacher whose demonstrations missed "neutral" answered it
  2 times in 250).
- ``chat`` wraps the prompt in the model's chat template with an instruction; the reply starts
  with "Answer:" so the scored continuation is the same as without it.

Demonstrations, instruction and chat markup are template: the returned :class:`Prompt`'s
content spans are those of the scored example alone, so attribution never picks their words.
The same prompter serves answering, fine-tuning and attribution, so the attributed quantity is
log p(the answer as the teacher gave it | the prompt it read).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from ..data import Example, Prompt, Task, TaskConfig
from ..data.example import CHOICE_LETTERS, render
from ..errors import ConfigError, DataError

AnswerFormat = Literal["auto", "text", "letter"]

_SENTINEL = "\x00PROMPT\x00"
_CHAT_REPLY = "Answer:"
_INSTRUCTION = {
    "letter": "Reply with the letter of the correct option.",
    "text": "Reply with the correct option.",
    "free": "Reply with the answer only.",
}


def letter(index: int) -> str:
    """The label that ``format=letter`` scores for option ``index``: "(a)", "(b)", ..."""
    return f"({CHOICE_LETTERS[index]})"


def lists_choices(template: str) -> bool:
    return "{choices}" in template


def letter_template(template: str) -> str:
    """``template`` with its options shown: unchanged if it lists ``{choices}``, else (a closed
    label set such as NLI's) its closing "Answer..." line replaced by a lettered options block."""
    if lists_choices(template):
        return template
    lines = template.rstrip().split("\n")
    if len(lines) > 1 and lines[-1].lstrip().lower().startswith("answer"):
        lines = lines[:-1]
    return "\n".join(lines) + "\nAnswer Choices:\n{choices}\nAnswer:"


def check_format(task: Task, task_cfg: TaskConfig, answer_format: str) -> None:
    """``letter`` needs options: a one-line error naming the key on a free-form task."""
    if answer_format not in ("auto", "text", "letter"):
        raise ConfigError(f"config key 'teacher.format': {answer_format!r} is not one of ['auto', 'text', 'letter']")
    if answer_format == "letter" and task.answer_type(task_cfg) != "choice":
        raise ConfigError(
            f"config key 'teacher.format': letter needs choices or a label set; task "
            f"'{task_cfg.name}' is free-form (use format=text)"
        )


def check_calibration(task: Task, task_cfg: TaskConfig, calibration: str) -> None:
    """Calibration corrects the options' scores: a one-line error naming the key on a free-form task."""
    if calibration != "none" and task.answer_type(task_cfg) != "choice":
        raise ConfigError(f"config key 'teacher.calibration': {calibration} calibrates the options of a "
                          f"choice task; task '{task_cfg.name}' has free-form answers (use none)")


def check_asking(task: Task, task_cfg: TaskConfig, answer_format: str, calibration: str) -> None:
    """:func:`check_format` and :func:`check_calibration`: before any stage runs."""
    check_format(task, task_cfg, answer_format)
    check_calibration(task, task_cfg, calibration)


class TeacherPrompter:
    """Prompts and scored answer strings for one task under one way of asking."""

    def __init__(
        self,
        task: Task,
        task_cfg: TaskConfig,
        answer_format: AnswerFormat = "auto",
        shots: int = 0,
        chat: bool = False,
        demo_pool: Sequence[Example] = (),
        tokenizer: Any = None,
        seed: int = 0,
        balanced: bool = True,
    ) -> None:
        check_format(task, task_cfg, answer_format)
        self.task, self.task_cfg = task, task_cfg
        self.kind = task.answer_type(task_cfg)
        if answer_format == "auto":
            answer_format = "letter" if self.kind == "choice" else "text"
        self.format, self.shots, self.chat = answer_format, shots, chat
        if shots < 0:
            raise ConfigError(f"config key 'teacher.shots': {shots} must be >= 0")
        base = task.template_for(task_cfg)
        self.template = letter_template(base) if answer_format == "letter" else base
        # A label set the task's own template does not list is template when shown, not content.
        self.choices_are_content = lists_choices(base)
        if shots:
            pool = list(demo_pool)
            if len(pool) < shots + 1:
                raise ConfigError(
                    f"config key 'teacher.shots': {shots} demonstrations need at least {shots + 1} "
                    f"train examples (one may be the scored example); the train split has {len(pool)}"
                )
            self._pool, self._slots = draw_demonstrations(pool, shots, seed, balanced)
        else:
            self._pool, self._slots = [], []
        self._chat_head = self._chat_tail = ""
        if chat:
            template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
            if not template:
                raise ConfigError("config key 'teacher.chat': the teacher's tokenizer has no chat template")
            wrapped = tokenizer.apply_chat_template(
                [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
            )
            if wrapped.count(_SENTINEL) != 1:
                raise ConfigError("config key 'teacher.chat': the chat template does not keep the user message")
            self._chat_head, self._chat_tail = wrapped.split(_SENTINEL)
            self._chat_tail += _CHAT_REPLY

    # -- answers ----------------------------------------------------------------------------
    def candidates(self, example: Example) -> list[str]:
        """The strings scored after the prompt, one per option (choice tasks)."""
        if not example.choices:
            raise DataError(f"example {example.id}: a choice task's example has no choices")
        if self.format == "letter":
            if len(example.choices) > len(CHOICE_LETTERS):
                raise DataError(f"example {example.id}: more than {len(CHOICE_LETTERS)} options for letters")
            return [letter(i) for i in range(len(example.choices))]
        return list(example.choices)

    def target(self, example: Example, answer: str) -> str:
        """The string the teacher would produce for ``answer`` (a choice's text, or free text)."""
        if self.format == "letter" and example.choices:
            try:
                return letter(example.choices.index(answer))
            except ValueError:
                raise DataError(f"example {example.id}: answer {answer!r} is not one of its choices") from None
        return answer

    # -- prompts ----------------------------------------------------------------------------
    def _render(self, example: Example) -> Prompt:
        return render(self.template, example, choices_are_content=self.choices_are_content)

    def demonstrations(self, example_id: str) -> list[Example]:
        """The demonstrations shown before ``example_id``: the draw, with a drawn example replaced
        by its spare (of the same label where the draw is balanced)."""
        if not self._slots:
            return [ex for ex in self._pool if ex.id != example_id][: self.shots]
        left = {label: [ex for ex in self._pool if ex.label == label and ex.id != example_id]
                for label in set(self._slots)}
        return [left[label].pop(0) for label in self._slots]

    def render(self, example: Example) -> Prompt:
        """The teacher's prompt for ``example``; content spans cover ``example``'s content only."""
        body = self._render(example)
        demos = "".join(
            f"{self._render(d).text} {self.target(d, d.label)}\n\n" for d in self.demonstrations(example.id)
        )
        user = demos + body.text
        if not self.chat:
            return Prompt(user, body.content_spans if not demos else _shift(body, len(demos)), body.span_fields)
        text = self._chat_head + user + "\n" + _INSTRUCTION[self.format if self.kind == "choice" else "free"]
        text += self._chat_tail
        return Prompt(text, _shift(body, len(self._chat_head) + len(demos)), body.span_fields)

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "shots": self.shots, "chat": self.chat,
                "demonstrations": [ex.id for ex in self._pool],
                "draw": "balanced" if self._slots else "random"}


def label_set(examples: Sequence[Example]) -> tuple[str, ...] | None:
    """The options every example shares (NLI's labels, a file's label set), else None."""
    choices = {ex.choices for ex in examples}
    return next(iter(choices)) if len(choices) == 1 and None not in choices else None


def draw_demonstrations(
    pool: Sequence[Example], shots: int, seed: int, balanced: bool = True
) -> tuple[list[Example], list[str]]:
    """The drawn demonstrations and, for a balanced draw, the label of each of the ``shots`` slots.

    A random draw takes ``shots + 1`` examples: an example that is itself drawn gets the spare one.
    A balanced draw (a label set, ``balanced``) fills the slots round-robin over the labels in a
    seeded order and takes one spare per label, so a replaced demonstration keeps its label. A
    label with too few train examples for its slots falls back to the random draw."""
    rng = random.Random(f"{seed}:teacher-shots")
    labels = label_set(pool) if balanced else None
    if labels:
        by_label = {label: [ex for ex in pool if ex.label == label] for label in labels}
        present = [label for label in labels if by_label[label]]
        order = rng.sample(present, len(present))
        slots = [order[i % len(order)] for i in range(shots)]
        need = Counter(slots)
        if all(len(by_label[label]) > n for label, n in need.items()):
            drawn = [ex for label in order if need[label] for ex in rng.sample(by_label[label], need[label] + 1)]
            return drawn, slots
    return rng.sample(list(pool), shots + 1), []


def _shift(prompt: Prompt, by: int) -> tuple[tuple[int, int], ...]:
    return tuple((s + by, e + by) for s, e in prompt.content_spans)
