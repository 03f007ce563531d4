"""Does the teacher's attribution survive bf16? Per-example agreement of token scores, bf16 vs fp32.

    python benchmarks/teacher_bf16.py --model qwen2.5-coder-1.5b-instruct --dataset cqa --n 16

The teacher is loaded twice, with float32 and with bfloat16 weights (``teacher.model.dtype``),
and attributes the same validation prompts (the dataset's letter format, target the gold
option's letter) with input x gradient. Per example: the Pearson r between the two score
vectors over the prompt's content tokens, and whether the top-5 rationale words agree; and
milliseconds per example for each dtype (batch 4, same prompts, one process, run one after the
other).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

from common import machine, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--dataset", default="cqa")
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--format", default="letter")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--out", default="benchmarks/results/teacher_bf16")
    args = ap.parse_args()

    import torch

    from saliency_distill.attribution import AttributionConfig, attribute
    from saliency_distill.data import TaskConfig, get_task
    from saliency_distill.data.prepare import make_splits
    from saliency_distill.models import ModelConfig, load_model
    from saliency_distill.rationale import RationaleConfig
    from saliency_distill.rationale.extract import select
    from saliency_distill.rationale.words import word_scores
    from saliency_distill.teacher.prompt import TeacherPrompter

    path = None if args.dataset in ("quartz", "socialiqa") else str(Path(args.data) / args.dataset)
    task_cfg = TaskConfig(name=args.dataset, path=path, seed=0, max_validation=args.n)
    task = get_task(args.dataset)
    splits = make_splits(task.load_source(task_cfg), task_cfg)
    prompter = TeacherPrompter(task, task_cfg, args.format)
    examples = splits["validation"][: args.n]
    prompts = [prompter.render(ex) for ex in examples]
    targets = [prompter.target(ex, ex.label) for ex in examples]
    results = {}
    for dtype in ("float32", "bfloat16"):
        lm = load_model(ModelConfig(name=args.model, dtype=dtype))
        cfg = AttributionConfig(method="input_x_gradient", bf16=False, batch_size=4)
        attribute(lm, [prompts[0].text], [targets[0]], cfg)  # warm-up
        start = time.perf_counter()
        scores = attribute(lm, [p.text for p in prompts], targets, cfg, spans=[p.content_spans for p in prompts])
        results[dtype] = {"ms": 1000 * (time.perf_counter() - start) / len(prompts), "scores": scores}
        del lm
        gc.collect()
    rs, same_top = [], 0
    for p, a, b in zip(prompts, results["float32"]["scores"], results["bfloat16"]["scores"]):
        wa = word_scores(p.text, p.content_spans, a.offsets, a.scores)
        wb = word_scores(p.text, p.content_spans, b.offsets, b.scores)
        x = torch.tensor([w.score for w in wa])
        y = torch.tensor([w.score for w in wb])
        rs.append(float(torch.corrcoef(torch.stack([x, y]))[0, 1]))
        k = RationaleConfig(k=5)
        same_top += [w.text for w in select(wa, k)] == [w.text for w in select(wb, k)]
    meta = machine()
    payload = {"meta": meta, "model": args.model, "dataset": args.dataset, "format": args.format, "n": len(prompts),
               "pearson_r": rs, "r_mean": statistics.mean(rs), "r_min": min(rs), "same_top5": same_top,
               "ms_fp32": results["float32"]["ms"], "ms_bf16": results["bfloat16"]["ms"]}
    md = "\n".join([
        f"# Teacher attribution: bf16 against fp32 weights ({args.model})", "",
        f"Command: `{meta['command']}` ({meta['date']}, {meta['machine']}, torch {meta['torch']}).",
        f"{len(prompts)} {args.dataset} validation prompts, {args.format} format, input x gradient of the gold "
        "answer's log-probability, word scores over content words, batch 4.", "",
        "| | value |", "|---|---:|",
        f"| Pearson r per example, mean | {payload['r_mean']:.4f} |",
        f"| Pearson r per example, min | {payload['r_min']:.4f} |",
        f"| same top-5 rationale words | {same_top} of {len(prompts)} |",
        f"| ms per example, fp32 weights | {payload['ms_fp32']:.0f} |",
        f"| ms per example, bf16 weights | {payload['ms_bf16']:.0f} |",
        f"| speed-up bf16 / fp32 | {payload['ms_fp32'] / payload['ms_bf16']:.2f}x |", ""])
    write_results(args.out, payload, md)
    print(md)


if __name__ == "__main__":
    main()
