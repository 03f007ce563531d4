"""The four Distilling Step-by-Step datasets (cqa, svamp, anli1, esnli) and their LLM rationales.

Folder layout (see the DSbS data README): ``<name>_<split>.json`` JSON lines, and
``llm/<split>_CoT_<i>.json`` JSON arrays of raw PaLM-540B few-shot completions, file ``i``
holding rows ``i*B .. i*B+B-1`` of the split.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import DataError
from .arithmetic import ArithmeticError_, evaluate
from .example import Example, make_example
from .files import get_field, iter_jsonl, read_json_array

logger = logging.getLogger(__name__)

NLI_LABELS = ("entailment", "neutral", "contradiction")

# A completion runs on into the next few-shot example after a blank line.
_NEXT_SHOT = re.compile(r"\n\s*\n\s*(?:Q:|Premise:)")
_ANSWER = re.compile(r"(?:So the answer is|The answer is|Answer:)", re.IGNORECASE)
_CHOICE_MARK = re.compile(r"^\(([a-e])\)\s*")


def parse_llm_completion(text: str) -> tuple[str, str | None]:
    """(rationale, label or None) from a raw few-shot chain-of-thought completion."""
    text = _NEXT_SHOT.split(text, maxsplit=1)[0]
    match = _ANSWER.search(text)
    if match is None:
        return text.strip(), None
    rationale = text[: match.start()].strip()
    label = text[match.end():].strip().split("\n", 1)[0].strip()
    label = label.rstrip(".").strip()
    label = _CHOICE_MARK.sub("", label)
    return rationale, label or None


def read_llm_rationales(folder: Path, split: str, n_rows: int) -> list[tuple[str, str | None]] | None:
    """Parsed completions for ``split`` in row order, or None when the folder has none."""
    files = sorted(
        (folder / "llm").glob(f"{split}_CoT_*.json"),
        key=lambda p: int(p.stem.rsplit("_", 1)[1]),
    )
    if not files:
        return None
    completions: list[Any] = []
    for i, path in enumerate(files):
        if path.name != f"{split}_CoT_{i}.json":
            raise DataError(f"{path}: expected {split}_CoT_{i}.json (files must be numbered 0..n-1)")
        completions.extend(read_json_array(path))
    if len(completions) < n_rows:
        logger.warning(
            "%s/llm: %d LLM completions for %d %s rows; the rest have none",
            folder, len(completions), n_rows, split,
        )
    parsed = []
    for c in completions[:n_rows]:
        parsed.append(parse_llm_completion(c) if isinstance(c, str) else ("", None))
    return parsed


def _read_split(
    folder: Path, name: str, split: str, convert: Callable[[str, int, dict[str, Any]], Example]
) -> list[Example]:
    path = folder / f"{name}_{split}.json"
    rows = list(iter_jsonl(path))
    examples = [convert(where, i, row) for i, (where, row) in enumerate(rows)]
    llm = read_llm_rationales(folder, split, len(examples))
    if llm is not None:
        examples = [
            _with_llm(ex, *llm[i]) if i < len(llm) else ex for i, ex in enumerate(examples)
        ]
    return examples


def _with_llm(ex: Example, rationale: str, label: str | None) -> Example:
    d = ex.to_dict()
    d["llm_rationale"] = rationale or None
    d["llm_label"] = label
    return Example.from_dict(d)


def _folder(path: str | None, name: str) -> Path:
    if not path:
        raise DataError(f"task '{name}' needs task.path: the DSbS folder holding {name}_*.json")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: DSbS data folder for task '{name}' not found")
    return folder


def _splits_present(folder: Path, name: str, splits: tuple[str, ...]) -> list[str]:
    present = [s for s in splits if (folder / f"{name}_{s}.json").is_file()]
    if not present:
        raise DataError(f"{folder}: none of {[f'{name}_{s}.json' for s in splits]} found")
    return present


def load_cqa(path: str | None) -> dict[str, list[Example]]:
    folder = _folder(path, "cqa")

    def convert(where: str, i: int, row: dict[str, Any]) -> Example:
        return make_example(
            where,
            id=get_field(where, row, "id"),
            fields={"question": get_field(where, row, "question")},
            label=get_field(where, row, "answer"),
            choices=get_field(where, row, "choices"),
            human_rationale=row.get("extractive_explanation") or None,
            meta={"abstractive_explanation": row.get("abstractive_explanation")},
        )

    return {s: _read_split(folder, "cqa", s, convert) for s in _splits_present(folder, "cqa", ("train", "test"))}


def load_svamp(path: str | None) -> dict[str, list[Example]]:
    folder = _folder(path, "svamp")
    out: dict[str, list[Example]] = {}
    for split in _splits_present(folder, "svamp", ("train", "test")):

        def convert(where: str, i: int, row: dict[str, Any], split: str = split) -> Example:
            equation = get_field(where, row, "label")
            try:
                value = evaluate(str(equation))
            except ArithmeticError_ as e:
                raise DataError(f"{where}: label is not an arithmetic equation ({e})") from None
            return make_example(
                where,
                id=f"svamp-{split}-{i}",
                fields={"question": get_field(where, row, "input")},
                label=equation,
                meta={"answer": value},
            )

        out[split] = _read_split(folder, "svamp", split, convert)
    return out


def _nli_loader(name: str, rationale_key: str) -> Callable[[str | None], dict[str, list[Example]]]:
    def load(path: str | None) -> dict[str, list[Example]]:
        folder = _folder(path, name)
        out: dict[str, list[Example]] = {}
        for split in _splits_present(folder, name, ("train", "valid", "test")):

            def convert(where: str, i: int, row: dict[str, Any], split: str = split) -> Example:
                label = get_field(where, row, "label")
                if not isinstance(label, int) or isinstance(label, bool):
                    raise DataError(f"{where}: label {label!r} is not 0, 1 or 2")
                return make_example(
                    where,
                    id=row.get("uid") or f"{name}-{split}-{i}",
                    fields={
                        "premise": get_field(where, row, "premise"),
                        "hypothesis": get_field(where, row, "hypothesis"),
                    },
                    label=label,
                    choices=NLI_LABELS,
                    human_rationale=row.get(rationale_key) or None,
                )

            out[split] = _read_split(folder, name, split, convert)
        return out

    return load


load_anli1 = _nli_loader("anli1", "reason")
load_esnli = _nli_loader("esnli", "explanation_1")
