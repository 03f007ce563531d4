"""Using a trained student: its answers to new examples, the way evaluation computes them.

The student is a model folder with its record (:mod:`.record`): a kept run's
``students/<mode>/seed<s>/model/`` or an exported folder. It reads the prompt the record
describes, answers greedily (the first line of the continuation, as
:func:`~saliency_distill.evaluation.evaluate_student` does) and, for choice tasks, scores every
option by its summed log-probability after the prompt (evaluation's ranked choice). Examples
come from the run's prepared split or from the user's file, read with the ``task.fields``
mapping of the ``file`` task; a file row without the label column is answered without a gold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import Example, FieldMap, make_example
from ..data.answers import exact_match
from ..data.files import get_field, iter_rows
from ..errors import ConfigError, DataError, ModelError
from ..models import LoadedModel, ModelConfig, load_model
from ..models.tokens import check_context
from ..run_dir import RunDir
from ..training.checkpoints import MODEL_DIR
from .modes import MODES, check_mode
from .record import RECORD_FILE, read_record, student_prompt_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One example to answer; ``gold`` is None when the input gave no label."""

    example: Example
    gold: str | None


def run_student_folder(run_dir: str | Path, mode: str, seed: int) -> Path:
    """The kept weights of ``mode``/``seed`` in a run folder, with one-line errors for a missing
    run, mode or seed and for a student whose weights were not kept."""
    root = Path(run_dir)
    if not RunDir(root).config.is_file():
        raise ConfigError(f"{root}: not a run folder (no config.yaml)")
    check_mode(mode)
    modes_dir = root / "students"
    trained = sorted(p.name for p in modes_dir.iterdir() if p.is_dir()) if modes_dir.is_dir() else []
    if mode not in trained:
        raise ConfigError(f"{root}: no student trained in mode '{mode}' (trained: {', '.join(trained) or 'none'})")
    folder = RunDir(root).student(mode, seed)
    seeds = sorted(p.name.removeprefix("seed") for p in (modes_dir / mode).glob("seed*") if p.is_dir())
    if not folder.is_dir():
        raise ConfigError(f"{root}: no {mode} student with seed {seed} (seeds: {', '.join(seeds) or 'none'})")
    if not (folder / "result.json").is_file():
        raise ConfigError(f"{folder}: the student's training did not finish (no result.json)")
    if not (folder / MODEL_DIR / RECORD_FILE).is_file():
        kept = "kept without its prompt record" if (folder / MODEL_DIR).is_dir() else "not kept"
        raise ConfigError(f"{folder}: the student's weights were {kept} (student.keep_models was false); "
                          f"re-run `saliency-distill train` with student.keep_models=true to keep them")
    return folder / MODEL_DIR


@dataclass
class Student:
    """A loaded student and its record."""

    lm: LoadedModel
    record: dict[str, Any]
    folder: Path

    @property
    def is_choice(self) -> bool:
        return self.record["task"]["answer"] == "choice"


def load_student(folder: str | Path) -> Student:
    """Read the record first (a folder that is not a student fails before any weights load)."""
    folder = Path(folder)
    record = read_record(folder)
    if record.get("mode") is not None and record["mode"] not in MODES:
        raise ModelError(f"{folder / RECORD_FILE}: unknown training mode {record['mode']!r}")
    model = record["model"]
    lm = load_model(ModelConfig(name=str(folder), dtype=model.get("dtype", "float32"), kind=model.get("kind", "auto")))
    return Student(lm, record, folder)


def default_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``task.fields`` a file laid out like the training data needs (overrides go on top)."""
    return dict(record["task"]["input_fields"])


def read_input(path: str | Path, fields: FieldMap, arithmetic: bool = False,
               names: Sequence[str] | None = None) -> list[Item]:
    """Examples of a JSONL / JSON / CSV / Parquet file mapped by ``fields``.

    ``names`` are the student's content fields (its template's placeholders): column
    ``fields.content[i]`` fills ``names[i]``, so a file may name its columns differently.

    Errors name the file, row and key. The id is ``fields.id``'s column, else an ``id`` column
    when the rows have one, else ``row-<n>`` (0-based, as the ``file`` task numbers rows). A row
    without the label column (or with an empty one) has no gold. With ``arithmetic`` (a SVAMP
    student) a gold equation is scored by its value, as SVAMP's evaluation does.
    """
    names = list(names) if names is not None else list(fields.content)
    if len(names) != len(fields.content):
        raise ConfigError(f"config key 'task.fields.content': the student reads {len(names)} content field(s) "
                          f"({', '.join(names)}), got {len(fields.content)} ({', '.join(fields.content)})")
    items = []
    for i, (where, row) in enumerate(iter_rows(Path(path))):
        choices: Any = None
        if fields.choices:
            choices = get_field(where, row, fields.choices)
            if isinstance(choices, str):
                choices = choices.split("|")
        elif fields.labels:
            choices = list(fields.labels)
        label = row.get(fields.label)
        has_gold = label is not None and str(label).strip() != ""
        if has_gold and isinstance(label, str) and choices is not None and label.strip().lstrip("-").isdigit() \
                and label.strip() not in [str(c).strip() for c in choices]:
            label = int(label)  # a CSV index into the choices
        if fields.id:
            ex_id = get_field(where, row, fields.id)
        else:
            ex_id = row["id"] if row.get("id") not in (None, "") else f"row-{i}"
        # An unlabelled row is validated with a stand-in label that is never reported.
        stand_in = (list(choices)[0] if isinstance(choices, (list, tuple)) and choices else "?")
        meta = {"answer": _equation_value(where, label)} if arithmetic and has_gold else {}
        content = {name: get_field(where, row, column) for name, column in zip(names, fields.content)}
        ex = make_example(where, id=ex_id, fields=content,
                          label=label if has_gold else stand_in, choices=choices, meta=meta)
        items.append(Item(ex, ex.label if has_gold else None))
    if not items:
        raise DataError(f"{path}: no rows to answer")
    return items


def _equation_value(where: str, label: Any) -> float:
    from ..data.arithmetic import ArithmeticError_, evaluate

    try:
        return evaluate(str(label))
    except ArithmeticError_ as e:
        raise DataError(f"{where}: label is not an arithmetic equation ({e})") from None


def predict(student: Student, items: Sequence[Item], batch_size: int = 16, max_new_tokens: int | None = None,
            progress: bool = True) -> Iterator[dict[str, Any]]:
    """One row per item, in order: ``id``, ``prediction``, and ``gold``/``correct`` when the item
    has a gold; for choice tasks ``choices``, ``choice_logprobs`` (summed log p of each option
    after the prompt), ``ranked_choice`` (the highest) and, with a gold, ``ranked_correct``.

    Batches hold ``batch_size`` consecutive items, as in evaluation, so a run's test split gets
    the rows of its ``predictions.jsonl``. Every prompt is checked against the model's context
    before the first batch runs.
    """
    from tqdm.auto import tqdm

    from ..teacher.generate import generate_answers
    from ..teacher.scoring import score_choices

    lm, record = student.lm, student.record
    new_tokens = max_new_tokens or int(record["max_new_tokens"])
    prompts = [student_prompt_text(record, it.example) for it in items]
    longest = [max((len(lm.tokenizer(" " + c, add_special_tokens=False)["input_ids"])
                    for c in it.example.choices or ()), default=0) for it in items] if student.is_choice else []
    check_context(lm, prompts, [f"example {it.example.id}" for it in items],
                  [max(new_tokens, n) for n in longest] if longest else new_tokens, "tokens with its answer")
    if student.is_choice and any(not it.example.choices for it in items):
        first = next(it.example.id for it in items if not it.example.choices)
        raise DataError(f"example {first}: a choice task's example has no choices to rank")
    bar = tqdm(total=len(items), unit="ex", desc="predict", disable=not progress)
    try:
        for start in range(0, len(items), batch_size):
            batch, texts = items[start:start + batch_size], prompts[start:start + batch_size]
            answers = generate_answers(lm, texts, new_tokens, batch_size)
            scores = score_choices(lm, texts, [it.example.choices or () for it in batch], batch_size) \
                if student.is_choice else None
            for j, (it, answer) in enumerate(zip(batch, answers)):
                yield _row(it, answer, scores.sums[j] if scores is not None else None)
            bar.update(len(batch))
    finally:
        bar.close()


def _row(item: Item, answer: str, logprobs: Sequence[float] | None) -> dict[str, Any]:
    ex = item.example
    row: dict[str, Any] = {"id": ex.id, "prediction": answer}
    if item.gold is not None:
        row.update(gold=item.gold, correct=exact_match(answer, ex))
    if logprobs is not None:
        choices = list(ex.choices or ())
        best = max(range(len(logprobs)), key=list(logprobs).__getitem__)  # the first of equals, as evaluation
        row.update(choices=choices, choice_logprobs=[float(v) for v in logprobs], ranked_choice=choices[best])
        if item.gold is not None:
            row["ranked_correct"] = choices[best] == item.gold
    return row


def write_predictions_file(path: str | Path, rows: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Stream ``rows`` to ``path`` (JSONL, atomically: a failure leaves no file) and return the
    count, the seconds, the examples per second and the accuracy over the rows with a gold."""
    import json

    from ..io import atomic_open

    n, correct, labelled = 0, 0, 0
    start = time.perf_counter()
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
            if "correct" in row:
                labelled += 1
                correct += bool(row["correct"])
    seconds = time.perf_counter() - start
    return {"n": n, "seconds": seconds, "examples_per_s": n / seconds if seconds > 0 else None,
            "labelled": labelled, "accuracy": correct / labelled if labelled else None}
