"""Attribution throughput and accuracy: saliency-distill against a bare-PyTorch floor, Captum and Inseq.

    python benchmarks/attribution_speed.py --model smollm2-135m-instruct
    python benchmarks/attribution_speed.py --model qwen2.5-coder-0.5b-instruct --n 16 --n-slow 4

Every variant attributes log p(answer | prompt) of the same prompts (multiple-choice questions
of 60-120 tokens with a 1-3 token answer: CommonsenseQA test rows from --data when that folder
exists, otherwise generated ones) on the same model. Each variant runs in its own subprocess,
one after the other in this run: it loads the model, attributes two warm-up examples (not
timed), then times the rest with time.perf_counter, while a thread samples the process's
resident memory every 2 ms; "peak MiB" is the highest sample above the level before the timed
part. Ratios are taken between rows of the same run. The completeness gap of integrated
gradients is |sum of scores - (f(x) - f(baseline))| / |f(x) - f(baseline)| per example, f the
answer's log-probability. Agreement is the Pearson correlation, per example, of a variant's
token scores with Captum's fp32 scores of the same method (and, for integrated gradients, the
same baseline and 64 points, a converged reference).

Captum and Inseq are benchmark-only dependencies: pip install -r benchmarks/requirements.txt
(see its header). Variants whose library is missing are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from common import example_rows, machine, write_results

MIN_TOKENS, MAX_TOKENS = 60, 120
# Integrated gradients as the library runs them by default, and as the floor and Captum run them.
IG_STEPS = 16


def select_prompts(tokenizer: Any, data: str | None, n: int) -> tuple[list[tuple[str, str, Any]], str]:
    """n (prompt, answer, content spans) of 60-120 prompt tokens and 1-3 answer tokens, and their source."""
    pool, source = example_rows(data, "test", 4 * n)
    chosen = []
    for prompt, answer, _, spans in pool:
        p = len(tokenizer(prompt)["input_ids"])
        a = len(tokenizer(" " + answer, add_special_tokens=False)["input_ids"])
        if MIN_TOKENS <= p <= MAX_TOKENS and 1 <= a <= 3:
            chosen.append((prompt, answer, spans))
        if len(chosen) == n:
            break
    if len(chosen) < n:
        raise SystemExit(f"attribution_speed: only {len(chosen)} prompts of {MIN_TOKENS}-{MAX_TOKENS} tokens found")
    return chosen, source


# --------------------------------------------------------------------------------------------
# Variants: each takes (lm, prompts, answers) and returns one record per example.

Record = dict[str, Any]


def _ours(**options: Any) -> Callable[..., list[Record]]:
    def run(lm: Any, prompts: Sequence[str], answers: Sequence[str], spans: Sequence[Any]) -> list[Record]:
        from saliency_distill.attribution import AttributionConfig, attribute

        out = attribute(lm, prompts, answers, AttributionConfig(**options), spans=spans)
        return [{"scores": list(ts.scores), "logprob": ts.logprob, "baseline_logprob": ts.baseline_logprob}
                for ts in out]

    return run


def _bare_batches(lm: Any, prompts: Sequence[str], answers: Sequence[str], size: int = 8) -> list[dict[str, Any]]:
    """Right-padded id tensors, prompt lengths, answer positions and targets (built before timing)."""
    tok = lm.tokenizer
    batches = []
    for s in range(0, len(prompts), size):
        ps = [tok(p)["input_ids"] for p in prompts[s:s + size]]
        ans = [tok(" " + a, add_special_tokens=False)["input_ids"] for a in answers[s:s + size]]
        width, aw = max(len(p) + len(a) for p, a in zip(ps, ans)), max(map(len, ans))
        ids = torch.zeros(len(ps), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        pos = torch.zeros(len(ps), aw, dtype=torch.long)
        tgt = torch.zeros_like(pos)
        tmask = torch.zeros(len(ps), aw, dtype=torch.bool)
        for r, (p, a) in enumerate(zip(ps, ans)):
            ids[r, :len(p) + len(a)] = torch.tensor(p + a)
            mask[r, :len(p) + len(a)] = 1
            pos[r, :len(a)] = torch.arange(len(p) - 1, len(p) - 1 + len(a))
            tgt[r, :len(a)] = torch.tensor(a)
            tmask[r, :len(a)] = True
        batches.append({"ids": ids, "mask": mask, "pos": pos, "tgt": tgt, "tmask": tmask,
                        "lengths": [len(p) for p in ps]})
    return batches


def _bare_logprob(lm: Any, b: dict[str, Any], x: torch.Tensor, repeat: int = 1) -> torch.Tensor:
    rep = lambda t: t.repeat(repeat, *([1] * (t.dim() - 1)))  # noqa: E731
    hidden = lm.model.base_model(inputs_embeds=x, attention_mask=rep(b["mask"])).last_hidden_state
    idx = rep(b["pos"]).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
    logits = lm.model.get_output_embeddings()(hidden.gather(1, idx)).float()  # (B, A, V)
    picked = torch.log_softmax(logits, -1).gather(-1, rep(b["tgt"]).unsqueeze(-1)).squeeze(-1)
    return picked.masked_fill(~rep(b["tmask"]), 0.0).sum(-1)


def _floor_ixg(bf16: bool) -> Callable[..., list[Record]]:
    """One forward with inputs_embeds requiring grad, logits at the answer positions, one backward."""

    def run(lm: Any, prompts: Sequence[str], answers: Sequence[str], spans: Any = None) -> list[Record]:
        for p in lm.model.parameters():
            p.requires_grad_(False)
        batches = _bare_batches(lm, prompts, answers)
        records = []
        for b in batches:
            x = lm.model.get_input_embeddings()(b["ids"]).detach().requires_grad_(True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                f = _bare_logprob(lm, b, x)
            (g,) = torch.autograd.grad(f.sum(), x)
            scores = (g.float() * x).sum(-1)
            records += [{"scores": scores[r, :n].tolist(), "logprob": float(f[r])} for r, n in enumerate(b["lengths"])]
        return records

    return run


def _floor_ig(lm: Any, prompts: Sequence[str], answers: Sequence[str], spans: Any = None) -> list[Record]:
    """16 midpoint-rule points from a zero baseline, all steps of a batch in passes of 64 rows."""
    for p in lm.model.parameters():
        p.requires_grad_(False)
    batches = _bare_batches(lm, prompts, answers)
    alphas = [(k + 0.5) / IG_STEPS for k in range(IG_STEPS)]
    records = []
    for b in batches:
        x = lm.model.get_input_embeddings()(b["ids"]).detach()  # (B, T, H)
        bsz = x.size(0)
        pmask = torch.zeros(x.shape[:2], dtype=torch.bool)
        for r, n in enumerate(b["lengths"]):
            pmask[r, :n] = True
        base = torch.where(pmask.unsqueeze(-1), torch.zeros_like(x), x)
        total = torch.zeros_like(x)
        per = max(1, 64 // bsz)
        for s in range(0, IG_STEPS, per):
            a = torch.tensor(alphas[s:s + per]).view(-1, 1, 1, 1)
            pts = (base + a * (x - base)).reshape(-1, *x.shape[1:]).requires_grad_(True)
            f = _bare_logprob(lm, b, pts, repeat=a.size(0))
            (g,) = torch.autograd.grad(f.sum(), pts)
            total += g.view(a.size(0), bsz, *x.shape[1:]).sum(0) / IG_STEPS
        scores = ((x - base) * total).sum(-1)
        records += [{"scores": scores[r, :n].tolist()} for r, n in enumerate(b["lengths"])]
    return records


def _captum(method: str, baseline_token: int | None = None, steps: int = IG_STEPS) -> Callable[..., list[Record]]:
    """Captum's LLM API, one example at a time; the target is the answer's token ids."""

    def run(lm: Any, prompts: Sequence[str], answers: Sequence[str], spans: Any = None) -> list[Record]:
        from captum.attr import (
            LayerGradientXActivation,
            LayerIntegratedGradients,
            LLMGradientAttribution,
            TextTokenInput,
        )

        for p in lm.model.parameters():
            p.requires_grad_(False)
        layer = lm.model.get_input_embeddings()
        cls = LayerGradientXActivation if method == "input_x_gradient" else LayerIntegratedGradients
        llm = LLMGradientAttribution(cls(lm.model, layer), lm.tokenizer)
        records = []
        for prompt, answer in zip(prompts, answers):
            target = torch.tensor(lm.tokenizer(" " + answer, add_special_tokens=False)["input_ids"])
            inp = TextTokenInput(prompt, lm.tokenizer)
            kwargs: dict[str, Any] = {}
            if method == "integrated_gradients":
                kwargs["n_steps"] = steps
                if baseline_token is not None:
                    kwargs["baselines"] = torch.full_like(inp.to_tensor(), baseline_token)
            res = llm.attribute(inp, target=target, **kwargs)
            records.append({"scores": res.seq_attr.tolist()})
        return records

    return run


def _inseq(method: str) -> Callable[..., list[Record]]:
    """Inseq, one example at a time, attributing each answer token's log-probability."""

    def run(lm: Any, prompts: Sequence[str], answers: Sequence[str], spans: Any = None) -> list[Record]:
        import inseq

        model = inseq.load_model(lm.model, method, tokenizer=lm.tokenizer)
        kwargs = {"n_steps": IG_STEPS} if method == "integrated_gradients" else {}
        records = []
        for prompt, answer in zip(prompts, answers):
            out = model.attribute(prompt, prompt + " " + answer, attributed_fn="probability", logprob=True,
                                  show_progress=False, **kwargs)
            attr = out.sequence_attributions[0].target_attributions  # (T_all, T_gen[, H])
            n = len(lm.tokenizer(prompt)["input_ids"])
            scores = attr.float().nan_to_num(0.0)
            if scores.dim() == 3:
                scores = scores.sum(-1)
            records.append({"scores": scores[:n].sum(-1).tolist()})
        return records

    return run


# name -> (runner, library, method family, whether it runs on the slow (small) example count)
VARIANTS: dict[str, tuple[Callable[..., list[Record]], str, str, bool]] = {
    "ours input_x_gradient fp32": (_ours(method="input_x_gradient", bf16=False), "saliency_distill", "ixg", False),
    "ours input_x_gradient bf16": (_ours(method="input_x_gradient", bf16=True), "saliency_distill", "ixg", False),
    "floor input_x_gradient fp32": (_floor_ixg(False), "torch", "ixg", False),
    "floor input_x_gradient bf16": (_floor_ixg(True), "torch", "ixg", False),
    "captum input_x_gradient fp32": (_captum("input_x_gradient"), "captum", "ixg", False),
    "inseq input_x_gradient fp32": (_inseq("input_x_gradient"), "inseq", "ixg", False),
    "ours integrated_gradients 16, zero baseline, all prompt tokens": (
        _ours(method="integrated_gradients", scope="prompt"), "saliency_distill", "ig", False),
    "ours integrated_gradients 16 (default: zero baseline, content tokens)": (
        _ours(method="integrated_gradients"), "saliency_distill", "ig", False),
    "ours integrated_gradients 8, content tokens": (
        _ours(method="integrated_gradients", steps=8), "saliency_distill", "ig", False),
    "floor integrated_gradients 16 fp32": (_floor_ig, "torch", "ig", False),
    "captum integrated_gradients 16 fp32": (_captum("integrated_gradients"), "captum", "ig", True),
    "inseq integrated_gradients 16 fp32": (_inseq("integrated_gradients"), "inseq", "ig", True),
}


# --------------------------------------------------------------------------------------------
# Worker: one variant in a fresh process.


class PeakRSS:
    """Highest resident set size seen by a 2 ms sampling thread, above the level at start (MiB)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.start) / 2**20


def worker(name: str, spec_path: str, out_path: str) -> None:
    from saliency_distill.io import write_json
    from saliency_distill.models import load_model

    spec = json.loads(Path(spec_path).read_text())
    run = VARIANTS[name][0]
    torch.manual_seed(0)
    lm = load_model(spec["model"])
    warm = spec["warmup"]
    run(lm, [r[0] for r in warm], [r[1] for r in warm], [r[2] for r in warm])
    slow, family = VARIANTS[name][3], VARIANTS[name][2]
    rows = spec["rows"][: spec["n_slow"] if slow else spec["n_ig"] if family == "ig" else spec["n"]]
    with PeakRSS() as mem:
        start = time.perf_counter()
        records = run(lm, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        seconds = time.perf_counter() - start
    write_json(out_path, {"seconds": seconds, "examples": len(rows), "peak_mib": mem.mib, "records": records})


# --------------------------------------------------------------------------------------------
# Main: run the variants, compare, write the table.


def _f_at(lm: Any, prompt: str, answer: str, baseline_token: int | None) -> float:
    """log p(answer | prompt), with every prompt token replaced by ``baseline_token`` if given."""
    ids = lm.tokenizer(prompt)["input_ids"]
    ans = lm.tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    if baseline_token is not None:
        ids = [baseline_token] * len(ids)
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids + ans])).logits[0].float()
    logp = torch.log_softmax(logits[len(ids) - 1:-1], -1)
    return float(logp.gather(-1, torch.tensor(ans).unsqueeze(-1)).sum())


def pearson(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) != len(b) or len(a) < 3:
        return None
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = (x.norm() * y.norm()).item()
    return (x @ y).item() / denom if denom > 0 else None


def gaps_of(records: Sequence[Record]) -> list[float]:
    out = []
    for r in records:
        if r.get("baseline_logprob") is None:
            continue
        delta = r["logprob"] - r["baseline_logprob"]
        out.append(abs(sum(r["scores"]) - delta) / max(abs(delta), 1e-12))
    return out


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default="../shared/data/dsbs/cqa", help="DSbS cqa folder; generated prompts if absent")
    ap.add_argument("--n", type=int, default=64, help="examples per variant")
    ap.add_argument("--n-ig", type=int, default=None, help="examples for our and the floor's integrated gradients (default --n)")
    ap.add_argument("--n-slow", type=int, default=16, help="examples for Captum's and Inseq's integrated gradients")
    ap.add_argument("--variants", default=None, help="comma-separated subset of the variant names")
    ap.add_argument("--out", default=None, help="results path without suffix (default benchmarks/results/attribution_speed_<model>)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.spec, args.result)
        return

    from saliency_distill.models import load_model

    names = list(VARIANTS) if not args.variants else [v.strip() for v in args.variants.split(",")]
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"attribution_speed: unknown variant {name!r} (choose from: {', '.join(VARIANTS)})")
    lm = load_model(args.model)
    rows, source = select_prompts(lm.tokenizer, args.data, args.n + 2)
    spec = {"model": args.model, "warmup": rows[:2], "rows": rows[2:], "n": args.n, "n_ig": min(args.n_ig or args.n, args.n),
            "n_slow": min(args.n_slow, args.n)}
    tokens = [len(lm.tokenizer(r[0])["input_ids"]) for r in rows[2:]]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        for i, name in enumerate(names):
            lib = VARIANTS[name][1]
            try:
                __import__(lib)
            except ImportError:
                print(f"skip {name}: {lib} is not installed", flush=True)
                continue
            out = Path(tmp) / f"{i}.json"
            cmd = [sys.executable, __file__, "--worker", name, "--spec", str(spec_path), "--result", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                print(f"fail {name}: {tail[0]}", flush=True)
                results[name] = {"error": tail[0]}
                continue
            res = json.loads(out.read_text())
            res["ms_per_example"] = 1000 * res["seconds"] / res["examples"]
            results[name] = res
            print(f"{name}: {res['ms_per_example']:.1f} ms/example over {res['examples']}, "
                  f"peak +{res['peak_mib']:.0f} MiB", flush=True)

    # Completeness of Captum's integrated gradients (token-0 baseline, per answer token summed).
    cap = results.get("captum integrated_gradients 16 fp32", {})
    if "records" in cap:
        for (prompt, answer, _), r in zip(spec["rows"], cap["records"]):
            r["logprob"] = _f_at(lm, prompt, answer, None)
            r["baseline_logprob"] = _f_at(lm, prompt, answer, 0)

    table = summarise(results)
    meta = {
        "model": args.model, "params": lm.model.num_parameters(), "prompts": source,
        "prompt_tokens_mean": round(statistics.mean(tokens), 1), "prompt_tokens_range": [min(tokens), max(tokens)],
        "n": args.n, "n_ig": spec["n_ig"], "n_slow": spec["n_slow"], **machine(),
    }
    out = Path(args.out or f"benchmarks/results/attribution_speed_{args.model.split('/')[-1]}")
    text = markdown(meta, table)
    write_results(out, {"meta": meta, "table": table,
                        "gaps": {k: gaps_of(v.get("records", [])) for k, v in results.items()}}, text)
    print(text)


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    ref_names = {"ixg": "captum input_x_gradient fp32", "ig": "captum integrated_gradients 16 fp32"}
    floors = {"ixg": "floor input_x_gradient bf16", "ig": "floor integrated_gradients 16 fp32"}
    table = []
    for name, res in results.items():
        if "error" in res:
            table.append({"variant": name, "error": res["error"]})
            continue
        family = VARIANTS[name][2]
        row: dict[str, Any] = {"variant": name, "examples": res["examples"],
                               "ms_per_example": round(res["ms_per_example"], 1), "peak_mib": round(res["peak_mib"])}
        floor = results.get(floors[family], {})
        if "ms_per_example" in floor:
            row["x_floor"] = round(res["ms_per_example"] / floor["ms_per_example"], 2)
        ref = results.get(ref_names[family], {})
        if "records" in ref and name != ref_names[family]:
            rs = [pearson(a["scores"], b["scores"]) for a, b in zip(res["records"], ref["records"])]
            rs = [r for r in rs if r is not None]
            if rs:
                row["r_vs_captum_mean"], row["r_vs_captum_min"] = round(statistics.mean(rs), 3), round(min(rs), 3)
        gaps = gaps_of(res["records"])
        if gaps:
            row["gap_median"] = round(statistics.median(gaps), 3)
            row["gap_under_10pct"] = round(sum(g < 0.1 for g in gaps) / len(gaps), 3)
        table.append(row)
    return table


def markdown(meta: dict[str, Any], table: list[dict[str, Any]]) -> str:
    lines = [
        f"# Attribution speed on {meta['model']} ({meta['params'] / 1e6:.0f}M params)", "",
        f"{meta['n']} prompts ({meta['prompts']}, {meta['prompt_tokens_range'][0]}-{meta['prompt_tokens_range'][1]} "
        f"tokens, mean {meta['prompt_tokens_mean']}); integrated gradients on the first {meta['n_ig']}, Captum's "
        f"and Inseq's on the first {meta['n_slow']}. torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}, {meta['date']}.", "",
        f"Command: `{meta['command']}`", "",
        "| variant | examples | ms/example | x floor | peak MiB | r vs Captum fp32 (mean / min) | IG gap median | IG gap < 10% |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error']} | | | | | | |")
            continue
        corr = "-" if "r_vs_captum_mean" not in r else f"{r['r_vs_captum_mean']:.3f} / {r['r_vs_captum_min']:.3f}"
        lines.append(
            f"| {r['variant']} | {r['examples']} | {r['ms_per_example']} | {_fmt(r.get('x_floor'), '.2f')} | "
            f"{r['peak_mib']} | {corr} | {_fmt(r.get('gap_median'))} | {_fmt(r.get('gap_under_10pct'), '.0%')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
