"""The record a saved student keeps next to its weights: how to prompt it, and what made it.

A student answers well only with the prompt it was trained on: the task's template with the
example's fields and lettered options, the task tag before or after it (``student.format``),
and greedy generation of one line. None of that is in the Hugging Face folder itself, so the
student stage writes ``saliency_distill.json`` beside the weights; ``saliency-distill predict``
and ``export`` read it back, and the exported folder carries it so that plain ``transformers``
code can rebuild the exact prompt (``prompt_template`` is one ``str.format`` string).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._version import __version__
from ..config import config_hash, to_dict
from ..data import Example, TaskConfig, get_task, render
from ..data.example import CHOICE_FORMAT, CHOICE_LETTERS, CHOICE_SEPARATOR
from ..errors import ModelError
from ..io import write_json
from .modes import MODES, fill

if TYPE_CHECKING:
    from ..evaluation import EvalConfig
    from ..models import ModelConfig

RECORD_FILE = "saliency_distill.json"
KIND = "saliency-distill student"
VERSION = 1
# Keys predict needs; a record without one of them is not a student's.
REQUIRED = ("kind", "prompt_template", "predict_template", "task", "max_new_tokens", "model")
TASK_REQUIRED = ("name", "template", "answer", "input_fields")


class StudentSettings(Protocol):
    """What a record reads of the student's config: :class:`~saliency_distill.student.StudentConfig`
    has these (this module does not import the stage, which imports it)."""

    @property
    def model(self) -> ModelConfig: ...
    @property
    def eval(self) -> EvalConfig: ...
    @property
    def predict_tag(self) -> str: ...
    @property
    def explain_tag(self) -> str: ...
    @property
    def alpha(self) -> float: ...
    @property
    def loss_average(self) -> str: ...
    @property
    def logit_kd(self) -> float: ...


def input_fields(task_cfg: TaskConfig, train: Sequence[Example]) -> dict[str, Any]:
    """The ``task.fields`` that read a file laid out like the training data: a file/hf task's own
    mapping; for a built-in task its content fields, a ``label`` column, and either a ``choices``
    column (options that differ per question) or the closed label set (NLI's three labels)."""
    if task_cfg.name in ("file", "hf"):
        return to_dict(task_cfg.fields)
    answer = get_task(task_cfg.name).answer_type(task_cfg)
    label_sets = {ex.choices for ex in train}
    closed = list(next(iter(label_sets))) if answer == "choice" and len(label_sets) == 1 and None not in label_sets \
        else None
    content = list(train[0].fields) if train else list(task_cfg.fields.content)
    return {"content": content, "label": "label", "choices": "choices" if answer == "choice" and not closed else None,
            "labels": closed, "id": None, "rationale": None, "llm_rationale": None}


def student_record(
    task_cfg: TaskConfig, cfg: StudentSettings, mode: str, seed: int, kind: str, templates: tuple[str, str],
    train: Sequence[Example], run_hash: str, provenance: Mapping[str, Any] | None = None,
    trained: Mapping[str, Any] | None = None, pool_inputs: int = 0,
) -> dict[str, Any]:
    """The JSON record of a student trained in ``mode`` with ``seed`` (``pool_inputs``: the pool
    inputs it learned the teacher's answers for).

    ``kind`` is the model's (causal or seq2seq), ``templates`` its (predict, explain) prompt
    templates, ``train`` the train split, ``run_hash`` the student run's hash, ``provenance``
    what the experiment adds (the run config's hash, the teacher, attribution and rationale
    sections) and ``trained`` a few training figures (steps, best validation step).
    """
    task = get_task(task_cfg.name)
    predict, explain = templates
    spec, about = MODES[mode], dict(provenance or {})
    uses_teacher = spec.needs_teacher or cfg.logit_kd > 0
    teacher = about.get("teacher") or {}
    attribution, rationale = about.get("attribution") or {}, about.get("rationale") or {}
    return {
        "kind": KIND,
        "record_version": VERSION,
        "saliency_distill_version": __version__,
        "model": {"base": cfg.model.name, "kind": kind, "dtype": cfg.model.dtype},
        "format": "prefix" if predict.startswith(f"{cfg.predict_tag}:") else "suffix",
        "predict_tag": cfg.predict_tag,
        "explain_tag": cfg.explain_tag,
        "predict_template": predict,
        "explain_template": explain,
        "prompt_template": fill(predict, task.template_for(task_cfg)),
        "choice_format": CHOICE_FORMAT,
        "choice_separator": CHOICE_SEPARATOR,
        "choice_letters": CHOICE_LETTERS,
        "max_new_tokens": cfg.eval.max_new_tokens,
        "answer_rule": "greedy decoding; the answer is the first line of the continuation, stripped",
        "choice_scoring": ("summed log p of the option's tokens as decoder labels (with eos)" if kind == "seq2seq"
                           else "summed log p of the tokens of ' ' + option after the prompt (no eos)"),
        "task": {
            "name": task_cfg.name,
            "template": task.template_for(task_cfg),
            "answer": task.answer_type(task_cfg),
            "input_fields": input_fields(task_cfg, train),
            "train_examples": len(train),
            "pool_inputs": pool_inputs,
            "config": to_dict(task_cfg),
        },
        "mode": mode,
        "seed": seed,
        "alpha": cfg.alpha if spec.explain or spec.soft else None,
        "loss_average": cfg.loss_average,
        "teacher": _teacher(teacher) if uses_teacher and teacher else None,
        "attribution": {"method": attribution.get("method"), "target": attribution.get("target"),
                        "k": rationale.get("k")} if spec.needs_rationales and attribution else None,
        "random_words_k": rationale.get("k") if spec.explain == "random" else None,
        "config_hash": run_hash,
        "run_config_hash": about.get("run_config_hash"),
        "trained": dict(trained or {}),
    }


def _teacher(teacher: Mapping[str, Any]) -> dict[str, Any]:
    """The teacher as a record names it: the model's name and dtype, and how it was asked."""
    model = teacher.get("model")
    name, dtype = (model.get("name"), model.get("dtype")) if isinstance(model, Mapping) else (model, None)
    return {"model": name, "dtype": dtype, **{k: teacher.get(k) for k in ("format", "shots", "chat", "finetune",
                                                                          "scoring")}}


def run_provenance(cfg: Any) -> dict[str, Any]:
    """What an experiment config (:class:`~saliency_distill.experiment.ExperimentConfig`, duck-typed:
    this layer sits below it) adds to its students' records: its hash and the teacher, attribution
    and rationale sections, so that a saved student says which teacher and rationales taught it."""
    return {"run_config_hash": config_hash(cfg),
            **{key: to_dict(getattr(cfg, key)) for key in ("teacher", "attribution", "rationale")}}


def write_record(model_dir: str | Path, record: Mapping[str, Any]) -> Path:
    path = Path(model_dir) / RECORD_FILE
    write_json(path, dict(record))
    return path


def read_record(model_dir: str | Path) -> dict[str, Any]:
    """The student record in ``model_dir``; a one-line :class:`ModelError` saying what is missing
    when the folder is not a saliency-distill student."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    path = folder / RECORD_FILE
    if not path.is_file():
        raise ModelError(f"{folder}: not a saliency-distill student (no {RECORD_FILE} beside the weights: it "
                         "records the prompt format the student was trained with)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable student record ({e})") from None
    missing = [k for k in REQUIRED if not isinstance(record, dict) or k not in record]
    if not missing:
        missing = [f"task.{k}" for k in TASK_REQUIRED if k not in (record["task"] or {})]
    if missing or record.get("kind") != KIND:
        what = f"missing '{missing[0]}'" if missing else f"kind is {record.get('kind')!r}, not {KIND!r}"
        raise ModelError(f"{path}: not a saliency-distill student record ({what})")
    return record


def student_prompt_text(record: Mapping[str, Any], example: Example) -> str:
    """The student's input for ``example``, built from the record alone: the same string the
    evaluation builds from the task (:func:`~saliency_distill.evaluation.student_prompt`)."""
    text = render(record["task"]["template"], example, record["choice_format"], record["choice_separator"]).text
    return fill(record["predict_template"], text)
