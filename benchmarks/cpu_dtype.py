"""bfloat16 against float32 on this machine's CPU, side by side in one run: a teacher's forward
pass, its forward + backward to the input embeddings (what gradient attribution does), and a
student's training step (bf16 autocast against fp32), for the embedded models.

    nice python benchmarks/cpu_dtype.py      student (with its training step) and 0.5B teacher
    nice python benchmarks/cpu_dtype.py --models smollm2-135m-instruct qwen2.5-coder-1.5b-instruct

Whether bfloat16 pays depends on the CPU: with AVX-512 BF16 or AMX it runs in hardware, with
AVX2 alone it is emulated. The table says which this machine has (what ``dtype: auto`` reads).
Random token ids (speed only), ``--batch`` x ``--tokens``; each variant runs twice in alternating
order and the faster pass counts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of_two, machine, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--train-models", nargs="*", default=["smollm2-135m-instruct"],
                    help="the models whose training step is timed too (the students)")
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-tokens", type=int, default=64)
    args = ap.parse_args()

    import torch

    from saliency_distill.models import native_dtype

    torch.manual_seed(0)
    rows: list[dict[str, Any]] = []
    for name in args.models:  # written after each model: the emulated passes take minutes
        rows += measure(name, args, train=name in args.train_models)
        meta = {**machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "native_bfloat16": native_dtype("bfloat16", "cpu"), "load_average": os.getloadavg()[0]}
        write_results("benchmarks/results/cpu_dtype", {"meta": meta, "rows": rows}, markdown(meta, rows))


def measure(name: str, args: argparse.Namespace, train: bool) -> list[dict[str, Any]]:
    """One model's rows: forward and gradient with fp32 and bf16 weights, then (``train``) a
    training step."""
    import torch

    from saliency_distill.models import ModelConfig, load_model

    models = {dt: load_model(ModelConfig(name=name, dtype=dt, device="cpu")).model for dt in ("float32", "bfloat16")}
    ids = torch.randint(100, 5000, (args.batch, args.tokens))

    def forward(m: Any) -> None:
        with torch.no_grad():
            m(ids)

    def gradient(m: Any) -> None:
        emb = m.get_input_embeddings()(ids).detach().requires_grad_(True)
        torch.autograd.grad(m(inputs_embeds=emb).logits[:, -1].logsumexp(-1).sum(), emb)

    rows = []
    for what, fn in (("forward", forward), ("forward + backward to the inputs", gradient)):
        best, _ = best_of_two({dt: (lambda m=m, fn=fn: fn(m)) for dt, m in models.items()})
        rows.append({"model": name, "task": what, "shape": f"{args.batch} x {args.tokens}", **best})
        print(rows[-1], flush=True)
    if not train:
        return rows
    student = models.pop("float32")
    models.clear()
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-5)
    batch = torch.randint(100, 5000, (args.train_batch, args.train_tokens))

    def step(autocast: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = student(batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    best, _ = best_of_two({"float32": lambda: step(False), "bfloat16": lambda: step(True)})
    rows.append({"model": name, "task": "training step (bf16: autocast over fp32 weights)",
                 "shape": f"{args.train_batch} x {args.train_tokens}", **best})
    print(rows[-1], flush=True)
    return rows


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    native = "in hardware (AVX-512 BF16 or AMX)" if meta["native_bfloat16"] else "emulated (no AVX-512 BF16, no AMX)"
    lines = [f"# bfloat16 against float32 on this CPU ({meta['cpu_capability']}: bfloat16 {native})", "",
             f"torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}, {meta['date']}, load average "
             f"{meta['load_average']:.1f} at the end. Random token ids; each variant ran twice in alternating order, "
             "the faster pass counts.", "", f"Command: `{meta['command']}`", "",
             "| model | task | batch x tokens | s, float32 | s, bfloat16 | bfloat16 / float32 |",
             "|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['task']} | {r['shape']} | {r['float32']:.2f} | {r['bfloat16']:.2f} | "
                     f"{r['bfloat16'] / r['float32']:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
