"""The student's greedy evaluation batched in data order against batched by token length: seconds
per example and how many answers agree, same prompts, model, dtype and batch size, in one run.

    nice python benchmarks/eval_batching.py --dataset esnli --examples 128

The prompts are the student's (``{input}\\npredict:``) for the first ``--examples`` test examples of
the dataset's config; the model is the embedded SmolLM2-135M-Instruct as it comes (fp32, not
trained: its answers run to ``--max-new-tokens``, so this is the dearer end of an evaluation; a
trained student stops at its label's eos). "data order" is the batching before length ordering;
"by length" is ``generate_answers``. Each variant runs twice, alternating; the faster pass counts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of_two, machine, write_results  # noqa: E402


def in_data_order(lm: Any, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """``generate_answers`` as it was before length ordering: batches in the order given."""
    from saliency_distill.teacher.generate import generate_answers

    out: list[str] = []
    for start in range(0, len(prompts), batch_size):  # one batch a call: nothing to reorder across
        out += generate_answers(lm, prompts[start:start + batch_size], max_new_tokens, batch_size)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="esnli", choices=["cqa", "svamp", "anli1", "esnli"])
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--examples", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=4)
    args = ap.parse_args()

    import torch

    from saliency_distill.config import load_config
    from saliency_distill.data import get_task
    from saliency_distill.data.prepare import make_splits
    from saliency_distill.evaluation.evaluate import student_prompt
    from saliency_distill.experiment import ExperimentConfig
    from saliency_distill.models import load_model
    from saliency_distill.teacher.generate import generate_answers

    cfg = load_config(ExperimentConfig, Path("configs") / f"{args.dataset}.yaml",
                      [f"task.path={Path(args.data) / args.dataset}"])
    task = get_task(cfg.task.name)
    examples = make_splits(task.load_source(cfg.task), cfg.task)["test"][: args.examples]
    prompts = [student_prompt(task, cfg.task, ex) for ex in examples]
    lm = load_model(cfg.student.model)
    lengths = [len(ids) for ids in lm.tokenizer(prompts)["input_ids"]]
    variants = {"data order": lambda: in_data_order(lm, prompts, args.max_new_tokens, args.batch_size),
                "by length": lambda: generate_answers(lm, prompts, args.max_new_tokens, args.batch_size)}
    load = os.getloadavg()[0]
    best, outs = best_of_two(variants)
    print(best, flush=True)

    def padded(order: list[int]) -> int:  # tokens read, padding included, by batches of this order
        return sum(len(chunk) * max(lengths[i] for i in chunk)
                   for chunk in (order[s:s + args.batch_size] for s in range(0, len(order), args.batch_size)))

    from saliency_distill.teacher.generate import length_order

    meta = {**machine(), "dataset": args.dataset, "model": cfg.student.model.name, "n": len(prompts),
            "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "dtype": str(lm.model.dtype),
            "threads": torch.get_num_threads(), "load_average": load, "mean_prompt_tokens": sum(lengths) / len(lengths),
            "padded_tokens_data_order": padded(list(range(len(prompts)))),
            "padded_tokens_by_length": padded(length_order(lengths))}
    result = {"s_per_example_data_order": best["data order"] / len(prompts),
              "s_per_example_by_length": best["by length"] / len(prompts),
              "speedup": best["data order"] / best["by length"],
              "same_answers": sum(a == b for a, b in zip(outs["data order"], outs["by length"]))}
    print(result)
    write_results(f"benchmarks/results/eval_batching_{args.dataset}", {"meta": meta, "result": result},
                  markdown(meta, result))


def markdown(meta: dict[str, Any], r: dict[str, Any]) -> str:
    return "\n".join([
        f"# Student evaluation batched by length: {meta['model']}, {meta['dataset']}", "",
        f"{meta['n']} test prompts (mean {meta['mean_prompt_tokens']:.0f} tokens), batches of {meta['batch_size']}, "
        f"{meta['max_new_tokens']} new tokens, {meta['dtype']}, torch {meta['torch']}, {meta['threads']} threads, "
        f"{meta['machine']}, {meta['date']}, load average {meta['load_average']:.1f} at the start. Each variant "
        "ran twice in alternating order; the faster pass counts.", "",
        f"Command: `{meta['command']}`", "",
        "| batching | tokens read (padding included) | s/example |", "|---|---:|---:|",
        f"| data order | {meta['padded_tokens_data_order']} | {r['s_per_example_data_order']:.3f} |",
        f"| by length | {meta['padded_tokens_by_length']} | {r['s_per_example_by_length']:.3f} |", "",
        f"Speed-up {r['speedup']:.2f}x; the same answer for {r['same_answers']} of {meta['n']} prompts.", ""])


if __name__ == "__main__":
    main()
