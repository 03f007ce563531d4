"""Student training throughput: saliency-distill's standard and saliency modes against a bare HF Trainer.

    python benchmarks/training_speed.py --model smollm2-135m-instruct --steps 20

All variants train the same student from the same weights on the same examples (CommonsenseQA
train rows from --data when that folder exists, otherwise generated questions), batch 8
examples, AdamW at 1e-4, for --steps optimizer steps, in fp32 and under bf16 autocast:

- ``bare Trainer standard``: transformers' Trainer with its own loss, the prompt tokens masked
  out of the labels, padding by DataCollatorForSeq2Seq: the reference;
- ``ours standard``: ``train_supervised`` on "predict: x" -> label;
- ``ours saliency``: ``train_supervised`` multi-task, "predict: x" -> label and
  "explain: x" -> a 5-word rationale (the first five question words longer than three letters,
  standing in for the teacher's words: throughput depends on lengths, not on which words), so
  each example is two sequences.

Examples/s counts examples (not sequences) over the wall time of ``Trainer.train()``, model
loading and saving excluded. Variants run one after another in this process, alternating,
each twice (rounds); the table gives the faster round and the ratio to the bare Trainer.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from common import example_rows, machine, write_results


def _pairs(rows: list[Any], n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(predict pairs, explain pairs), one of each per example."""
    predict, explain = [], []
    for prompt, answer, question, _ in rows[:n]:
        words = [w.strip("?,.!") for w in question.split() if len(w.strip("?,.!")) > 3][:5]
        predict.append(("predict: " + prompt, answer))
        explain.append(("explain: " + prompt, " ".join(words) or question))
    return predict, explain


def bare_trainer(model_name: str, predict: list[tuple[str, str]], steps: int, bf16: bool, tmp: str) -> float:
    """Seconds of Trainer.train() for a plain standard fine-tune (the reference)."""
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from saliency_distill.models import load_model
    from saliency_distill.training import encode_pair

    lm = load_model(model_name)
    features = [encode_pair(lm, p, t) for p, t in predict]
    args = TrainingArguments(
        output_dir=tmp, max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-4, bf16=bf16,
        use_cpu=True, save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=10**6, seed=0,
    )
    collator = DataCollatorForSeq2Seq(lm.tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=lm.model, args=args, train_dataset=features, data_collator=collator)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def ours(model_name: str, predict: list[tuple[str, str]], explain: list[tuple[str, str]] | None, steps: int,
         bf16: bool, tmp: str) -> float:
    """Seconds of Trainer.train() inside ``train_supervised`` (its own wall-time record)."""
    from saliency_distill.models import load_model
    from saliency_distill.training import TrainConfig, train_supervised

    lm = load_model(model_name)
    cfg = TrainConfig(max_steps=steps, batch_size=8, learning_rate=1e-4, bf16=bf16, progress_bar=False,
                      save_steps=10**6, logging_steps=10**6)
    if explain is None:
        pairs, ids, tasks = predict, None, None
    else:
        pairs = [p for pair in zip(predict, explain) for p in pair]
        ids = [str(i // 2) for i in range(len(pairs))]
        tasks = [i % 2 for i in range(len(pairs))]
    metrics = train_supervised(lm, pairs, cfg, Path(tmp) / "out", ids=ids, tasks=tasks, alpha=0.5)
    return float(metrics["wall_seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="../shared/data/dsbs/cqa", help="DSbS cqa folder; generated examples if absent")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per variant (batch 8 examples)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/training_speed")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows, source = example_rows(args.data, "train", 8 * args.steps)
    predict, explain = _pairs(rows, 8 * args.steps)
    variants: list[tuple[str, bool, Any]] = []
    for bf16 in (False, True):
        variants += [
            ("bare Trainer standard", bf16, lambda b, t: bare_trainer(args.model, predict, args.steps, b, t)),
            ("ours standard", bf16, lambda b, t: ours(args.model, predict, None, args.steps, b, t)),
            ("ours saliency", bf16, lambda b, t: ours(args.model, predict, explain, args.steps, b, t)),
        ]
    seconds: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for name, bf16, run in variants:
            with tempfile.TemporaryDirectory() as tmp:
                s = run(bf16, tmp)
            seconds.setdefault((name, bf16), []).append(s)
            print(f"{name} {'bf16' if bf16 else 'fp32'}: {8 * args.steps / s:.2f} examples/s ({s:.1f} s)", flush=True)

    table = []
    for (name, bf16), runs in seconds.items():
        best = min(runs)
        ref = min(seconds[("bare Trainer standard", bf16)])
        seqs = 2 if name == "ours saliency" else 1
        table.append({"variant": name, "precision": "bf16" if bf16 else "fp32", "steps": args.steps,
                      "seconds_rounds": [round(s, 2) for s in runs], "examples_per_s": round(8 * args.steps / best, 2),
                      "sequences_per_s": round(8 * seqs * args.steps / best, 2),
                      "time_vs_bare": round(best / ref, 3)})
    meta = {"model": args.model, "data": source, "batch_examples": 8, **machine()}
    lines = [f"# Student training throughput, {args.model}", "",
             f"{source}, batch 8 examples, {args.steps} steps per variant, best of {args.rounds} rounds; "
             f"torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}, {meta['date']}.", "",
             f"Command: `{meta['command']}`", "",
             "| variant | precision | examples/s | sequences/s | time per step vs bare Trainer |",
             "|---|---|---:|---:|---:|"]
    lines += [f"| {r['variant']} | {r['precision']} | {r['examples_per_s']} | {r['sequences_per_s']} | "
              f"{r['time_vs_bare']:.2f}x |" for r in table]
    text = "\n".join(lines) + "\n"
    write_results(args.out, {"meta": meta, "table": table}, text)
    print(text)


if __name__ == "__main__":
    main()
