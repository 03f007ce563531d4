"""Student training throughput: our layouts against a bare HF Trainer, each variant in its own process.

    python benchmarks/training_speed.py --rounds 3 --steps 16

SmolLM2-135M-Instruct (the embedded student) trains on CommonsenseQA train examples from
--data (DSbS; the first --examples of them), batch 8 examples, AdamW at 1e-4, prompts in the
student's default format ("x\\npredict:" -> label, "x\\nexplain:" -> rationale). Variants:

- ``bare Trainer``: transformers' Trainer with the model's own loss on "x\\npredict:" -> label,
  padding by DataCollatorForSeq2Seq (the reference);
- ``ours standard`` / ``ours saliency`` / ``ours llm-rationale``: ``train_supervised`` in the
  shipped layout (one copy of the prompt per example, LM head at target positions only).
  saliency explains with 5 words (the first five question words longer than three letters: a
  stand-in for the teacher's words, as throughput depends on lengths only), llm-rationale with
  the dataset's PaLM rationale (DSbS ``llm``);
- ``... old layout``: the same pairs as separate padded rows with logits at every position
  (what this library did before), so the gain is visible and the losses can be compared;
- ``... packed``: several examples per row (``train.pack_length``), no padding;
- levers on ``ours standard``, one setting each: batch 16, ``group_by_length``, ``pack_length`` 512
  and 256, unfused AdamW (``train.optim: adamw_torch``, the default until 2026-12-07; the fused
  one is the default now, as it is the bare Trainer's with torch >= 2.8), sdpa attention (``auto``
  picks eager for rows up to 128 tokens on CPU), and glibc's own malloc (``ours`` workers call
  ``saliency_distill.allocator.hold_freed_memory`` as the command line does; the bare Trainer
  does not, except in its ``held malloc`` row), one intra-op thread instead of the machine's
  cores, and OpenMP threads pinned to cores (``OMP_PROC_BIND=close``, ``OMP_PLACES=cores``).
  ``torch.compile`` is not among them: on 2 AVX2 cores a
  4-step run of it did not finish in 7 minutes (compilation), 2026-12-06.

``--dtypes fp32`` runs every variant in fp32 (where bf16 is emulated, e.g. AVX2 without AVX-512 BF16).

Every variant runs in a fresh subprocess: load, 2 warm-up steps, then ``--steps`` timed steps
(median over ``--rounds`` rounds, rounds interleaved across variants). Reported: examples/s,
tokens/s (real tokens, padding excluded), peak RSS of the process, and the achieved share of the
machine's bf16 matmul throughput, measured in the same run by a plain ``torch.matmul`` loop;
model FLOPs count 6 x parameters x positions for the decoder body plus 6 x hidden x vocab x
positions that reach the LM head (attention scores not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_results  # noqa: E402

WARMUP = 2
VARIANTS: dict[str, dict[str, Any]] = {
    # name: mode (None: bare Trainer), layout keys of TrainConfig
    "bare Trainer standard": {"mode": None},
    "ours standard": {"mode": "standard"},
    "ours standard old layout": {"mode": "standard", "share_prompt": False, "target_logits": False},
    "ours standard packed": {"mode": "standard", "pack_length": 1024},
    "ours saliency": {"mode": "saliency"},
    "ours saliency old layout": {"mode": "saliency", "share_prompt": False, "target_logits": False},
    "ours saliency packed": {"mode": "saliency", "pack_length": 1024},
    "ours llm-rationale": {"mode": "llm-rationale"},
    "ours llm-rationale old layout": {"mode": "llm-rationale", "share_prompt": False, "target_logits": False},
    # levers on ours standard (issue 45): each changes one thing
    "ours standard batch 16": {"mode": "standard", "batch_size": 16},
    "ours standard by length": {"mode": "standard", "group_by_length": True},
    "ours standard packed 512": {"mode": "standard", "pack_length": 512},
    "ours standard packed 256": {"mode": "standard", "pack_length": 256},
    "ours standard unfused AdamW": {"mode": "standard", "optim": "adamw_torch"},  # the default until 2026-12-07
    # the default since 2026-12-07 (second change): eager attention for rows up to 128 tokens, malloc keeps freed memory
    "ours standard sdpa attention": {"mode": "standard", "attention": "sdpa"},
    "ours standard system malloc": {"mode": "standard", "malloc": "system"},
    "bare Trainer standard held malloc": {"mode": None, "malloc": "held"},
    # thread settings: one intra-op thread (how far the two cores scale), OpenMP threads pinned to cores
    "ours standard 1 thread": {"mode": "standard", "threads": 1},
    "ours standard pinned threads": {"mode": "standard", "env": {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}},
}
PLAN = [(name, "bf16") for name in VARIANTS] + [("bare Trainer standard", "fp32"), ("ours standard", "fp32")]


# ---- worker: one variant in this process ------------------------------------------------------


def _examples(data: str, n: int) -> list[Any]:
    from saliency_distill.data import TaskConfig, get_task

    cfg = TaskConfig(name="cqa", path=data)
    return get_task("cqa").load_source(cfg)["train"][:n]


def _pairs(mode: str, examples: list[Any]) -> Any:
    from saliency_distill.data import TaskConfig, get_task
    from saliency_distill.student.modes import build_pairs, templates

    words = {ex.id: " ".join([w.strip("?,.!") for w in ex.fields["question"].split()
                              if len(w.strip("?,.!")) > 3][:5]) or ex.fields["question"] for ex in examples}
    predict, explain = templates("auto", seq2seq=False)
    return build_pairs(mode, get_task("cqa"), TaskConfig(name="cqa", path="-"), examples, None, words,
                       predict, explain)


class _Clock:
    """Trainer callback: wall time and per-step batch statistics after the warm-up steps."""

    def __new__(cls, stats: dict[str, Any]):
        from transformers import TrainerCallback

        class Clock(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == WARMUP:
                    stats["start"] = time.perf_counter()
                    stats["batches_at_start"] = len(stats["batches"])
                if state.global_step == WARMUP + stats["steps"]:
                    stats["end"] = time.perf_counter()

        return Clock()


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from saliency_distill.allocator import hold_freed_memory
    from saliency_distill.models import load_model

    spec = VARIANTS[args.variant]
    if "threads" in spec:
        torch.set_num_threads(spec["threads"])
    if spec.get("malloc", "held" if spec["mode"] else "system") == "held":  # as the command line does
        hold_freed_memory()
    bf16 = args.dtype == "bf16"
    examples = _examples(args.data, args.examples)
    stats: dict[str, Any] = {"steps": args.steps, "batches": []}
    lm = load_model("smollm2-135m-instruct")
    body = sum(p.numel() for n, p in lm.model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    hidden, vocab = lm.model.config.hidden_size, lm.model.config.vocab_size
    total_steps = WARMUP + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        if spec["mode"] is None:
            losses = _bare(lm, examples, total_steps, bf16, tmp, stats)
        else:
            losses = _ours(lm, spec, examples, total_steps, bf16, tmp, stats)
    timed = stats["batches"][stats["batches_at_start"]:stats["batches_at_start"] + args.steps]
    seconds = stats["end"] - stats["start"]
    positions = sum(b["positions"] for b in timed)
    head = sum(b["head"] for b in timed)
    return {
        "variant": args.variant, "dtype": args.dtype, "seconds": seconds, "steps": args.steps,
        "examples": sum(b["examples"] for b in timed), "tokens": sum(b["tokens"] for b in timed),
        "positions": positions, "head_positions": head,
        "flops": 6 * body * positions + 6 * hidden * vocab * head,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "first_losses": losses, "threads": torch.get_num_threads(),
    }


def _ours(lm: Any, spec: dict[str, Any], examples: list[Any], steps: int, bf16: bool, tmp: str,
          stats: dict[str, Any]) -> list[float]:
    import saliency_distill.training.trainer as trainer_module
    from saliency_distill.training import TrainConfig, train_supervised

    layout = {k: v for k, v in spec.items() if k not in ("mode", "malloc", "threads", "env")}
    cfg = TrainConfig(**{"max_steps": steps, "batch_size": 8, "learning_rate": 1e-4, "bf16": bf16,
                         "progress_bar": False, "save_minutes": None, "logging_steps": 1, **layout})
    pairs = _pairs(spec["mode"], examples)
    original = trainer_module._collate

    def counting(items, pad_token_id, seq2seq, cfg):
        batch = original(items, pad_token_id, seq2seq, cfg)
        real = sum(len(p["input_ids"]) for item in items for p in item["parts"])
        if cfg.share_prompt and len(items[0]["parts"]) > 1:
            from saliency_distill.training.packing import make_blocks

            real = sum(len(b.ids) for b in make_blocks(items, True))
        positions = batch["input_ids"].numel()
        head = len(batch["target_ids"]) if cfg.target_logits else positions
        stats["batches"].append({"examples": len(items), "tokens": real, "positions": positions, "head": head})
        return batch

    trainer_module._collate = counting
    metrics = train_supervised(lm, list(zip(pairs.prompts, pairs.targets)), cfg, Path(tmp) / "out", ids=pairs.ids,
                               tasks=pairs.tasks if pairs.multitask else None, alpha=0.5,
                               extra_callbacks=[_Clock(stats)])
    del metrics
    history = json.loads((Path(tmp) / "out" / "train_metrics.json").read_text())
    return [history.get("loss_first")]


def _bare(lm: Any, examples: list[Any], steps: int, bf16: bool, tmp: str, stats: dict[str, Any]) -> list[float]:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from saliency_distill.training import encode_pair

    pairs = _pairs("standard", examples)
    features = [encode_pair(lm, p, t) for p, t in zip(pairs.prompts, pairs.targets)]
    args = TrainingArguments(
        output_dir=tmp, max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-4, bf16=bf16,
        use_cpu=True, save_strategy="no", report_to=[], disable_tqdm=True, logging_steps=1, seed=0,
    )
    collator = DataCollatorForSeq2Seq(lm.tokenizer, padding=True, label_pad_token_id=-100)

    def counting(features):
        batch = collator(features)
        stats["batches"].append({"examples": len(features), "tokens": int(batch["attention_mask"].sum()),
                                 "positions": batch["input_ids"].numel(), "head": batch["input_ids"].numel()})
        return batch

    trainer = Trainer(model=lm.model, args=args, train_dataset=features, data_collator=counting,
                      callbacks=[_Clock(stats)])
    trainer.train()
    return [next(h["loss"] for h in trainer.state.log_history if "loss" in h)]


def matmul_worker(args: argparse.Namespace) -> dict[str, Any]:
    """FLOP/s of a plain square matmul loop in each of ``args.dtypes`` (bf16 and fp32 by default),
    on this process's threads. Emulated bf16 (no AVX-512 BF16) takes minutes: leave it out there."""
    import torch

    out = {}
    for name in (args.dtypes or "bf16,fp32").split(","):
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[name]
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            best = min(best, (time.perf_counter() - start) / 10)
        out[name] = 2 * 2048**3 / best
    return out


# ---- parent: every variant in a subprocess, rounds interleaved --------------------------------


def _spawn(extra: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        cmd = [sys.executable, __file__, *extra, "--result", out]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
        return json.loads(Path(out).read_text())
    finally:
        os.unlink(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/dsbs/cqa", help="DSbS cqa folder")
    ap.add_argument("--examples", type=int, default=1000, help="train examples the batches are drawn from")
    ap.add_argument("--steps", type=int, default=16, help="timed optimizer steps per variant (after 2 warm-up)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--dtypes", default=None,
                    help="run every variant in these dtypes, e.g. fp32 where bf16 is emulated (default: bf16, "
                         "and fp32 for bare Trainer and ours standard)")
    ap.add_argument("--out", default="benchmarks/results/training_speed")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", help=argparse.SUPPRESS)
    ap.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.result:  # a worker
        import logging

        logging.basicConfig(level=logging.WARNING)
        result = matmul_worker(args) if args.matmul else worker(args)
        Path(args.result).write_text(json.dumps(result))
        return
    if not Path(args.data).is_dir():
        raise SystemExit(f"--data {args.data}: no such folder (the DSbS cqa data, see ../shared/data/dsbs/README)")

    plan = [(name, d) for d in args.dtypes.split(",") for name in VARIANTS] if args.dtypes else PLAN
    plan = [p for p in plan if not args.only or p[0] in args.only.split(",")]
    common = ["--data", args.data, "--examples", str(args.examples), "--steps", str(args.steps)]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    matmul = []
    for r in range(args.rounds):
        matmul.append(_spawn(["--matmul", *(["--dtypes", args.dtypes] if args.dtypes else [])]))
        for name, dtype in plan:
            res = _spawn([*common, "--variant", name, "--dtype", dtype], VARIANTS[name].get("env"))
            runs.setdefault((name, dtype), []).append(res)
            print(f"round {r + 1} {name} {dtype}: {res['examples'] / res['seconds']:.2f} examples/s, "
                  f"loss {res['first_losses']}", flush=True)
    peak = {k: statistics.median(m[k] for m in matmul) for k in matmul[0]}

    table = []
    for (name, dtype), rs in runs.items():
        eps = [r["examples"] / r["seconds"] for r in rs]
        med = statistics.median(eps)
        table.append({
            "variant": name, "dtype": dtype, "rounds": len(rs),
            "examples_per_s": round(med, 3), "examples_per_s_rounds": [round(x, 3) for x in eps],
            "spread": round((max(eps) - min(eps)) / med, 3),
            "tokens_per_s": round(statistics.median(r["tokens"] / r["seconds"] for r in rs), 1),
            "padding_share": round(1 - rs[0]["tokens"] / rs[0]["positions"], 3),
            "head_positions_per_example": round(rs[0]["head_positions"] / rs[0]["examples"], 1),
            "peak_rss_gb": round(max(r["peak_rss_gb"] for r in rs), 2),
            "matmul_share": round(statistics.median(r["flops"] / r["seconds"] for r in rs) / peak[dtype], 3),
            "first_loss": rs[0]["first_losses"][0],
        })
    by = {(t["variant"], t["dtype"]): t for t in table}
    for t in table:
        bare = by.get(("bare Trainer standard", t["dtype"]))
        std = by.get(("ours standard", t["dtype"]))
        t["vs_bare"] = round(t["examples_per_s"] / bare["examples_per_s"], 3) if bare else None
        t["time_vs_ours_standard"] = round(std["examples_per_s"] / t["examples_per_s"], 3) if std else None

    meta = {"model": "smollm2-135m-instruct", "data": f"cqa train (DSbS), first {args.examples}",
            "batch_examples": 8, "steps": args.steps, "warmup": WARMUP, "rounds": args.rounds,
            "matmul_flops": peak, **machine()}
    lines = [
        "# Student training throughput, smollm2-135m-instruct", "",
        f"{meta['data']}, batch 8 examples (16 in the batch 16 row), {args.steps} timed steps after {WARMUP} warm-up, each variant in a "
        f"fresh process, median of {args.rounds} rounds (spread: (max - min) / median); torch {meta['torch']}, "
        f"{meta['threads']} threads, {meta['machine']}, {meta['date']}. Measured matmul throughput (2048^3, "
        f"same run): {', '.join(f'{k} {v / 1e9:.0f} GFLOP/s' for k, v in peak.items())}.", "",
        f"Command: `{meta['command']}`", "",
        "| variant | dtype | examples/s | spread | vs bare Trainer | time/example vs ours standard | tokens/s "
        "| padding | LM-head positions/example | peak RSS GB | share of matmul (same dtype) | first loss |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in sorted(table, key=lambda t: (t["dtype"], list(VARIANTS).index(t["variant"]))):
        lines.append(
            f"| {t['variant']} | {t['dtype']} | {t['examples_per_s']:.2f} | {t['spread']:.0%} | "
            f"{t['vs_bare']:.2f}x | {t['time_vs_ours_standard']:.2f}x | {t['tokens_per_s']:.0f} | "
            f"{t['padding_share']:.0%} | {t['head_positions_per_example']} | {t['peak_rss_gb']} | "
            f"{t['matmul_share']:.1%} | {t['first_loss']:.4f} |")
    lines += ["", "`first loss` is the loss of the first optimizer step (same seed, so the same 8 examples): "
              "a layout and its old layout compute the same loss. The share of matmul compares the model FLOP/s "
              "with the plain matmul rate of the row's dtype, on all the process's threads (a 1-thread row's share "
              "is of that same rate). The levers on `ours standard` (batch 16, by length, packed 512 / 256, unfused "
              "AdamW, sdpa attention, system malloc, 1 thread, pinned threads) each change one setting; their "
              "throughput only (validation accuracy at equal examples seen is a separate run)."]
    text = "\n".join(lines) + "\n"
    write_results(args.out, {"meta": meta, "table": table}, text)
    print(text)


if __name__ == "__main__":
    main()
