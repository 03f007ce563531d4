"""Examples/s of every attribution method on one model, side by side in one run.

    python benchmarks/attribution_methods.py --model qwen2.5-coder-0.5b-instruct \
        --data ../shared/data/dsbs/cqa --n 16
    python benchmarks/attribution_methods.py --model qwen2.5-coder-1.5b-instruct \
        --data ../shared/data/dsbs/cqa --methods attention --no-bf16 --out benchmarks/results/attribution_1.5b

Prompts are CommonsenseQA test questions (from a DSbS folder) when --data is given, otherwise
QuaRTz test questions; the attributed answer is the gold one. Each method runs over the same
prompts with the same batch size after one warm-up batch; wall time is measured with
time.perf_counter. The table (Markdown) and JSON go to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from saliency_distill.attribution import AttributionConfig, attribute
from saliency_distill.data import TaskConfig, get_task, make_splits
from saliency_distill.io import write_json
from saliency_distill.models import load_model

VARIANTS = [
    ("saliency", {"bf16": False}),
    ("saliency", {"bf16": True}),
    ("input_x_gradient", {"bf16": False}),
    ("input_x_gradient", {"bf16": True}),
    ("attention", {"bf16": False}),
    ("attention", {"bf16": True}),
    ("attention", {"bf16": True, "rollout": True}),
    ("integrated_gradients", {"steps": 16, "bf16": False}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--data", default=None, help="DSbS cqa folder; QuaRTz when unset")
    ap.add_argument("--n", type=int, default=16, help="examples per method")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ig-n", type=int, default=8, help="examples for integrated gradients (slow)")
    ap.add_argument("--methods", default="", help="comma-separated methods to run (default: all)")
    ap.add_argument("--no-bf16", action="store_true", help="fp32 rows only (where bf16 is emulated)")
    ap.add_argument("--out", default="benchmarks/results/attribution_methods")
    args = ap.parse_args()
    chosen = set(filter(None, args.methods.split(",")))
    unknown = chosen - {m for m, _ in VARIANTS}
    if unknown:
        ap.error(f"--methods: unknown {', '.join(sorted(unknown))}; choose from {', '.join(dict(VARIANTS))}")
    variants = [(m, x) for m, x in VARIANTS if (not chosen or m in chosen) and not (args.no_bf16 and x.get("bf16"))]

    torch.manual_seed(0)
    task_cfg = TaskConfig(name="cqa", path=args.data) if args.data else TaskConfig(name="quartz")
    task = get_task(task_cfg.name)
    test = make_splits(task.load_source(task_cfg), task_cfg)["test"][: args.n + args.batch_size]
    prompts = [task.render(ex, task_cfg).text for ex in test]
    answers = [ex.label for ex in test]
    warm, prompts, answers = prompts[: args.batch_size], prompts[args.batch_size:], answers[args.batch_size:]
    lm = load_model(args.model)
    n_tokens = sum(len(lm.tokenizer(p)["input_ids"]) for p in prompts) / len(prompts)
    rows = []
    for method, extra in variants:
        cfg = AttributionConfig(method=method, batch_size=args.batch_size, **extra)
        n = args.ig_n if method == "integrated_gradients" else args.n
        attribute(lm, warm[:2], answers[:2], cfg)
        start = time.perf_counter()
        out = attribute(lm, prompts[:n], answers[:n], cfg)
        seconds = time.perf_counter() - start
        row = {"method": method, **extra, "examples": n, "seconds": round(seconds, 2),
               "examples_per_s": round(n / seconds, 3), "ms_per_example": round(1000 * seconds / n, 1)}
        gaps = [ts.completeness_gap for ts in out if ts.completeness_gap is not None]
        if gaps:
            row["median_completeness_gap"] = round(sorted(gaps)[len(gaps) // 2], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"model": args.model, "params": lm.model.num_parameters(), "data": task_cfg.name,
            "mean_prompt_tokens": round(n_tokens, 1), "batch_size": args.batch_size,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d")}
    out = Path(args.out)
    json_path, md_path = out.parent / (out.name + ".json"), out.parent / (out.name + ".md")  # "attribution_1.5b"
    write_json(json_path, {"meta": meta, "rows": rows})
    lines = [f"# Attribution methods on {args.model} ({meta['params'] / 1e6:.0f}M params)", "",
             f"{task_cfg.name} test prompts, mean {meta['mean_prompt_tokens']} tokens, batch {args.batch_size}, "
             f"{meta['threads']} threads, torch {meta['torch']}, {meta['machine']}, {meta['date']}.", "",
             "Command: `python " + " ".join(sys.argv) + "`", "",
             "| method | options | examples | ms/example | examples/s | IG completeness gap (median) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r.items() if k in ("bf16", "rollout", "steps")) or "-"
        lines.append(f"| {r['method']} | {opts} | {r['examples']} | {r['ms_per_example']} | {r['examples_per_s']} | "
                     f"{r.get('median_completeness_gap', '-')} |")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
