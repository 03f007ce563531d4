"""Few-shot prompts with their shared demonstrations read once per batch, against reading every
prompt whole: seconds per example and agreement, for teacher letter scoring, input x gradient
attribution and sequence scoring (faithfulness), in one run on the same prompts and batches.

    nice python benchmarks/prefix_sharing.py --dataset esnli --examples 48

The dataset's config (configs/<dataset>.yaml: its teacher, answer format and shots), validation
examples, bf16 teacher weights, batches of ``--batch-size``. "whole" sets the shared-prefix
minimum out of reach, so each batch is read as before; each variant runs twice, in alternating
order, and the faster pass counts (the machine is shared and noisy).
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
    ap.add_argument("--dataset", default="esnli", choices=["cqa", "svamp", "anli1", "esnli"])
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--examples", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    import torch

    import saliency_distill.attribution.inputs as inputs
    from saliency_distill.attribution import AttributionConfig, attribute
    from saliency_distill.config import load_config
    from saliency_distill.data import get_task
    from saliency_distill.data.prepare import make_splits
    from saliency_distill.experiment import ExperimentConfig
    from saliency_distill.models import load_model
    from saliency_distill.teacher import score_choices, sequence_logprobs
    from saliency_distill.teacher.answer import make_prompter

    cfg = load_config(ExperimentConfig, Path("configs") / f"{args.dataset}.yaml",
                      [f"task.path={Path(args.data) / args.dataset}"])
    splits = make_splits(get_task(cfg.task.name).load_source(cfg.task), cfg.task)  # as `prepare` splits it
    examples = splits["validation"][: args.examples]
    prompter = make_prompter(cfg.task, cfg.teacher, splits["train"])
    rendered = [prompter.render(ex) for ex in examples]
    prompts, spans = [p.text for p in rendered], [list(p.content_spans) for p in rendered]
    candidates = [prompter.candidates(ex) for ex in examples]
    golds = [prompter.target(ex, ex.label) for ex in examples]
    lm = load_model(cfg.teacher.model)
    attr_cfg = AttributionConfig(method="input_x_gradient", batch_size=args.batch_size)
    shared_min = inputs.MIN_PREFIX
    tasks = {
        "teacher letter scoring": lambda: score_choices(lm, prompts, candidates, args.batch_size).sums,
        "input x gradient": lambda: attribute(lm, prompts, golds, attr_cfg, spans=spans),
        "sequence scoring": lambda: sequence_logprobs(lm, prompts, golds, args.batch_size)[0],
    }
    def with_min_prefix(fn: Any, minimum: int) -> Any:
        def run() -> Any:
            inputs.MIN_PREFIX = minimum
            return fn()
        return run

    rows = []
    for name, fn in tasks.items():
        best, outs = best_of_two({"shared": with_min_prefix(fn, shared_min), "whole": with_min_prefix(fn, 10**9)})
        inputs.MIN_PREFIX = shared_min
        rows.append({"task": name, "n": len(prompts), "batch_size": args.batch_size,
                     "s_per_example_whole": best["whole"] / len(prompts),
                     "s_per_example_shared": best["shared"] / len(prompts),
                     "speedup": best["whole"] / best["shared"], **agreement(name, outs["shared"], outs["whole"])})
        print(rows[-1], flush=True)
    prefix = inputs.encode(lm, ["0"] * min(len(prompts), args.batch_size), prompts[: args.batch_size],
                           golds[: args.batch_size], spans=spans[: args.batch_size], share_prefix=True).prefix
    lengths = [len(lm.tokenizer(p)["input_ids"]) for p in prompts]
    meta = {**machine(), "dataset": args.dataset, "teacher": cfg.teacher.model.name, "shots": cfg.teacher.shots,
            "dtype": "bfloat16 weights", "mean_prompt_tokens": sum(lengths) / len(lengths),
            "first_batch_shared_tokens": prefix, "threads": torch.get_num_threads()}
    write_results(f"benchmarks/results/prefix_sharing_{args.dataset}", {"meta": meta, "rows": rows},
                  markdown(meta, rows))


def agreement(name: str, shared: Any, whole: Any) -> dict[str, Any]:
    """How far the shared-prefix results are from reading each prompt whole."""
    import torch

    if name == "input x gradient":
        r, same_top = [], []
        for a, b in zip(shared, whole):
            keep = torch.tensor(a.scores) != 0  # the content positions (the prefix has no scores)
            x, y = torch.tensor(a.scores)[keep], torch.tensor(b.scores)[keep]
            r.append(float(torch.corrcoef(torch.stack([x, y]))[0, 1]))
            same_top.append(set(x.abs().topk(min(3, len(x))).indices.tolist())
                            == set(y.abs().topk(min(3, len(y))).indices.tolist()))
        return {"agreement": f"content scores r >= {min(r):.4f} (mean {sum(r) / len(r):.4f}); top-3 tokens "
                             f"equal in {sum(same_top)}/{len(same_top)}",
                "max_logprob_difference": max(abs(a.logprob - b.logprob) for a, b in zip(shared, whole))}
    flat_a = [v for row in shared for v in (row if isinstance(row, list) else [row])]
    flat_b = [v for row in whole for v in (row if isinstance(row, list) else [row])]
    out: dict[str, Any] = {"max_logprob_difference": max(abs(a - b) for a, b in zip(flat_a, flat_b))}
    if name == "teacher letter scoring":
        picks = [max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__)
                 for a, b in zip(shared, whole)]
        out["agreement"] = f"same answer in {sum(picks)}/{len(picks)}"
    else:
        out["agreement"] = ""
    return out


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [f"# Shared demonstrations read once: {meta['teacher']}, {meta['dataset']} ({meta['shots']}-shot)", "",
             f"{rows[0]['n']} validation prompts (mean {meta['mean_prompt_tokens']:.0f} tokens; the first batch "
             f"shares its first {meta['first_batch_shared_tokens']} tokens), batches of {rows[0]['batch_size']}, "
             f"{meta['dtype']}, torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}, {meta['date']}. "
             "Each variant ran twice in alternating order; the faster pass counts.", "",
             f"Command: `{meta['command']}`", "",
             "| task | s/example, whole prompts | s/example, shared prefix | speed-up | max abs. log p difference "
             "| agreement |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['s_per_example_whole']:.3f} | {r['s_per_example_shared']:.3f} | "
                     f"{r['speedup']:.2f}x | {r['max_logprob_difference']:.2e} | {r['agreement']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
