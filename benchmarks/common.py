"""What the benchmark scripts share: their example sources and how results are written."""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

PREAMBLE = "Answer the following commonsense question by choosing the best of the five answer choices.\n\n"


def cqa_rows(folder: str, split: str) -> list[tuple[str, str, str]]:
    """(prompt, answer, question) of CommonsenseQA rows from a DSbS folder, prompts with PREAMBLE."""
    from saliency_distill.data import TaskConfig, get_task

    cfg = TaskConfig(name="cqa", path=folder)
    task = get_task("cqa")
    rows = task.load_source(cfg)[split]
    return [(PREAMBLE + task.render(ex, cfg).text, ex.label, ex.fields["question"]) for ex in rows]


def generated_rows(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """Five-choice questions from one template and seeded word lists, for machines without the DSbS data."""
    rng = random.Random(seed)
    places = ["kitchen", "library", "garage", "forest", "hospital", "school", "office", "beach", "farm", "museum"]
    things = ["knife", "book", "wrench", "tree", "bandage", "pencil", "stapler", "towel", "tractor", "painting"]
    moods = ["in a hurry", "half asleep", "very curious", "quite bored", "rather anxious", "cheerful"]
    rows = []
    for _ in range(n):
        k = rng.randrange(len(places))
        choices = rng.sample([p for j, p in enumerate(places) if j != k], 4) + [places[k]]
        rng.shuffle(choices)
        question = (f"Someone {rng.choice(moods)} needs a {things[k]} for the task they have been putting off "
                    f"all week. Where would they most likely go to find one?")
        text = PREAMBLE + "Question: " + question + "\nAnswer Choices:\n" + "\n".join(
            f"({'abcde'[j]}) {c}" for j, c in enumerate(choices)) + "\nAnswer:"
        rows.append((text, places[k], question))
    return rows


def example_rows(data: str | None, split: str, n: int) -> tuple[list[tuple[str, str, str]], str]:
    """CQA rows when ``data`` is a folder, else generated ones (at least ``n``), and a label for the source."""
    if data and Path(data).is_dir():
        return cqa_rows(data, split), f"cqa {split} (DSbS)"
    return generated_rows(max(n, 1)), "generated"


def machine() -> dict[str, Any]:
    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} cores",
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
            "command": "python " + " ".join(sys.argv)}


def write_results(out: str | Path, payload: dict[str, Any], markdown: str) -> None:
    """``out``.json and ``out``.md, each written under a temporary name and renamed."""
    from saliency_distill.io import atomic_open, write_json

    out = Path(out)
    write_json(out.with_suffix(".json"), payload)
    with atomic_open(out.with_suffix(".md")) as f:
        f.write(markdown)
