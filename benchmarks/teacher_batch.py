"""The demo's teacher answering at several batch sizes: seconds per question and the same answers,
side by side in one run (the demo's teacher stage is 5 of its 19.5 minutes).

    python benchmarks/teacher_batch.py --examples 96 --batch-sizes 8,16,32 [--per-batch]

``configs/demo.yaml``'s task (SNLI from PyPI) and teacher (1.5B, letter, 3-shot balanced, the
config's dtype), its validation and test pairs as ``prepare`` splits them, letter scoring. Questions
go to ``score_choices`` in chunks of 4 batches, as ``teach`` sends them, so the shared
demonstrations are read once per chunk; ``--per-batch`` adds, for each batch size, calls of one
batch each (demonstrations read once per batch, as ``teach`` read them until 2026-12-07). Each
variant runs twice, in order and then in reverse; the faster pass counts (the machine drifts).
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
    ap.add_argument("--per-batch", action="store_true", help="also read the demonstrations once per batch")
    ap.add_argument("--out", default="benchmarks/results/teacher_batch")
    args = ap.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    plan = [(s, 4 * s) for s in sizes] + ([(s, s) for s in sizes] if args.per_batch else [])

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

    def run(size: int, per_call: int) -> Any:
        return lambda: [row for start in range(0, len(prompts), per_call) for row in score_choices(
            lm, prompts[start:start + per_call], candidates[start:start + per_call], size).sums]

    def name(size: int, per_call: int) -> str:
        return f"batch {size}, {per_call} a call"

    best, outs = best_of_two({name(*v): run(*v) for v in plan})
    first = name(*plan[0])

    def picks(rows: list[list[float]]) -> list[int]:
        return [max(range(len(r)), key=r.__getitem__) for r in rows]

    rows = [{"batch_size": s, "per_call": c, "n": len(prompts), "s_per_question": best[name(s, c)] / len(prompts),
             "speedup": best[first] / best[name(s, c)],
             "same_answers": sum(a == b for a, b in zip(picks(outs[name(s, c)]), picks(outs[first])))}
            for s, c in plan]
    for row in rows:
        print(row, flush=True)
    lengths = [len(lm.tokenizer(p)["input_ids"]) for p in prompts]
    meta = {**machine(), "teacher": cfg.teacher.model.name, "dtype": str(lm.model.dtype), "task": cfg.task.name,
            "shots": cfg.teacher.shots, "mean_prompt_tokens": sum(lengths) / len(lengths)}
    write_results(args.out, {"meta": meta, "rows": rows}, markdown(meta, rows))


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [f"# Teacher batch size: {meta['teacher']}, {meta['task']} ({meta['shots']}-shot letter scoring)", "",
             f"{rows[0]['n']} validation and test questions of the demo's split (mean {meta['mean_prompt_tokens']:.0f} "
             f"tokens with the demonstrations, read once per call of `score_choices`), {meta['dtype']}, "
             f"torch {meta['torch']}, "
             f"{meta['threads']} threads, {meta['machine']}, {meta['date']}. Each variant ran twice in alternating "
             "order; the faster pass counts.", "", f"Command: `{meta['command']}`", "",
             "| batch size | questions a call | s/question | speed vs the first row | same answer as the first row |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['per_call']} | {r['s_per_question']:.3f} | {r['speedup']:.2f}x | "
                     f"{r['same_answers']}/{r['n']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
