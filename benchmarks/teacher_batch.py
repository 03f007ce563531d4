"""The demo's teacher answering at several batch sizes: seconds per question and the same answers,
side by side in one run (the demo's teacher stage is 6 of its 23 minutes).

    python benchmarks/teacher_batch.py --examples 96 --batch-sizes 8,16,32

``configs/demo.yaml``'s task (SNLI from PyPI) and teacher (1.5B, letter, 3-shot balanced, the
config's dtype), its validation and test pairs as ``prepare`` splits them, letter scoring with the
shared demonstrations read once per batch. Each batch size runs twice, in order and then in
reverse; the faster pass counts (the machine drifts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of_two, machine, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--batch-sizes", default="8,16,32")
    ap.add_argument("--out", default="benchmarks/results/teacher_batch")
    args = ap.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    from saliency_distill.config import load_config
    from saliency_distill.data import get_task
    from saliency_distill.data.prepare import make_splits
    from saliency_distill.experiment import ExperimentConfig
    from saliency_distill.models import load_model
    from saliency_distill.teacher import score_choices
    from saliency_distill.teacher.answer import make_prompter

    cfg = load_config(ExperimentConfig, Path(args.config))
    splits = make_splits(get_task(cfg.task.name).load_source(cfg.task), cfg.task)
    examples = (splits["validation"] + splits["test"])[: args.examples]
    prompter = make_prompter(cfg.task, cfg.teacher, splits["train"])
    prompts = [prompter.render(ex).text for ex in examples]
    candidates = [prompter.candidates(ex) for ex in examples]
    lm = load_model(cfg.teacher.model)

    def run(size: int) -> Any:
        return lambda: score_choices(lm, prompts, candidates, size).sums

    best, outs = best_of_two({f"batch {s}": run(s) for s in sizes})
    first = f"batch {sizes[0]}"

    def picks(rows: list[list[float]]) -> list[int]:
        return [max(range(len(r)), key=r.__getitem__) for r in rows]

    rows = [{"batch_size": s, "n": len(prompts), "s_per_question": best[f"batch {s}"] / len(prompts),
             "speedup": best[first] / best[f"batch {s}"],
             "same_answers": sum(a == b for a, b in zip(picks(outs[f"batch {s}"]), picks(outs[first])))}
            for s in sizes]
    for row in rows:
        print(row, flush=True)
    lengths = [len(lm.tokenizer(p)["input_ids"]) for p in prompts]
    meta = {**machine(), "teacher": cfg.teacher.model.name, "dtype": str(lm.model.dtype), "task": cfg.task.name,
            "shots": cfg.teacher.shots, "mean_prompt_tokens": sum(lengths) / len(lengths)}
    write_results(args.out, {"meta": meta, "rows": rows}, markdown(meta, rows))


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [f"# Teacher batch size: {meta['teacher']}, {meta['task']} ({meta['shots']}-shot letter scoring)", "",
             f"{rows[0]['n']} validation and test questions of the demo's split (mean {meta['mean_prompt_tokens']:.0f} "
             f"tokens with the demonstrations, read once per batch), {meta['dtype']}, torch {meta['torch']}, "
             f"{meta['threads']} threads, {meta['machine']}, {meta['date']}. Each batch size ran twice in alternating "
             "order; the faster pass counts.", "", f"Command: `{meta['command']}`", "",
             f"| batch size | s/question | speed vs batch {rows[0]['batch_size']} | same answer as batch "
             f"{rows[0]['batch_size']} |", "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['s_per_question']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['same_answers']}/{r['n']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
