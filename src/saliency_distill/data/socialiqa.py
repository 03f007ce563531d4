"""Social IQa (Sap et al. 2019, AllenAI, CC BY 4.0): three-choice questions about people's
motivations, reactions and what happens next; 2,224 rows.

The copy used is the one inside the ``evals==3.0.1.post1`` wheel on PyPI (the same wheel as
QuaRTz), so a fresh machine with only the package registry can obtain it. Each row is one user
message, context and question followed by "A: ...; B: ...; C: ..." and ``ideal`` the gold letter.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import DataError
from .example import Example, make_example
from .files import get_field, iter_jsonl
from .packages import fetch
from .quartz import evals_file

SOCIALIQA = evals_file(
    "evals/registry/data/theory_of_mind/socialiqa/test.jsonl",
    licence="CC BY 4.0 (Social IQa, Allen Institute for AI); evals package MIT",
    source="https://allenai.org/data/socialiqa via PyPI evals==3.0.1.post1",
)

_ROW = re.compile(r"^(?P<question>.+?)\s+A: (?P<a>.+?); B: (?P<b>.+?); C: (?P<c>.+?)\.?\s*$", re.S)


def parse_socialiqa_row(where: str, index: int, row: dict[str, Any]) -> Example:
    messages = get_field(where, row, "input")
    user = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise DataError(f"{where}: no user message in 'input'")
    match = _ROW.match(user[-1])
    if not match:
        raise DataError(f"{where}: cannot find the options 'A: ...; B: ...; C: ...' in the question")
    choices = [match.group(k) for k in "abc"]
    ideal = str(get_field(where, row, "ideal")).strip()
    if ideal not in ("A", "B", "C"):
        raise DataError(f"{where}: label {ideal!r} is not one of the option letters A, B, C")
    return make_example(where, id=f"socialiqa-{index}", fields={"question": match.group("question")},
                        label=choices["ABC".index(ideal)], choices=choices)


def load_socialiqa(path: str | None) -> dict[str, list[Example]]:
    """All rows as one pool (split by the task seed); ``path`` overrides the file."""
    file = Path(path).expanduser() if path else fetch(SOCIALIQA)
    return {"all": [parse_socialiqa_row(where, i, row) for i, (where, row) in enumerate(iter_jsonl(file))]}
