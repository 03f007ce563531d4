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


Row = tuple[str, str, str, list[tuple[int, int]]]  # prompt, answer, question, content spans of the prompt


def cqa_rows(folder: str, split: str) -> list[Row]:
    """CommonsenseQA rows from a DSbS folder, prompts with PREAMBLE."""
    from saliency_distill.data import TaskConfig, get_task

    cfg = TaskConfig(name="cqa", path=folder)
    task = get_task("cqa")
    rows = task.load_source(cfg)[split]
    out = []
    for ex in rows:
        prompt = task.render(ex, cfg)
        spans = [(s + len(PREAMBLE), e + len(PREAMBLE)) for s, e in prompt.content_spans]
        out.append((PREAMBLE + prompt.text, ex.label, ex.fields["question"], spans))
    return out


def generated_rows(n: int, seed: int = 0) -> list[Row]:
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
        spans = [(text.index(question), text.index(question) + len(question))]
        spans += [(text.index(f") {c}\n") + 2, text.index(f") {c}\n") + 2 + len(c)) for c in choices]
        rows.append((text, places[k], question, spans))
    return rows


def example_rows(data: str | None, split: str, n: int) -> tuple[list[Row], str]:
    """CQA rows when ``data`` is a folder, else generated ones (at least ``n``), and a label for the source."""
    if data and Path(data).is_dir():
        return cqa_rows(data, split), f"cqa {split} (DSbS)"
    return generated_rows(max(n, 1)), "generated"


def machine() -> dict[str, Any]:
    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip()
            + f" ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores",  # AVX2 CPUs emulate bf16
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
            "command": "python " + " ".join(sys.argv)}


def write_results(out: str | Path, payload: dict[str, Any], markdown: str) -> None:
    """``out``.json and ``out``.md, each written under a temporary name and renamed."""
    from saliency_distill.io import atomic_open, write_json

    out = Path(out)  # names like "..._qwen2.5-coder-0.5b" have dots: append, never with_suffix
    write_json(out.parent / (out.name + ".json"), payload)
    with atomic_open(out.parent / (out.name + ".md")) as f:
        f.write(markdown)


def add_study_args(ap: Any) -> None:
    """The dataset and split sizes of the student studies (student_format, multitask_diagnosis)."""
    ap.add_argument("--dataset", default="esnli", help="a DSbS dataset: cqa, svamp, anli1, esnli")
    ap.add_argument("--data", default="../shared/data/dsbs", help="the DSbS folder")
    ap.add_argument("--train", type=int, default=800, help="train examples (seeded subsample)")
    ap.add_argument("--validation", type=int, default=200, help="validation examples (seeded subsample)")


def best_of_two(fns: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """Run each variant twice, in order and then in reverse (a noisy, shared machine drifts):
    ``({name: the faster pass's seconds}, {name: its last output})``."""
    best: dict[str, float] = {}
    outs: dict[str, Any] = {}
    names = list(fns)
    for order in (names, names[::-1]):
        for name in order:
            started = time.perf_counter()
            outs[name] = fns[name]()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    return best, outs
