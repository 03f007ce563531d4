"""SVAMP's teacher answers before and after cutting at the stop strings and canonicalising, and
the teacher-label students that learn them.

    python benchmarks/clean_targets.py --seeds 0,1,2 --modes teacher-label

1. The study's teacher answers (``benchmarks/state/svamp/teacher/answers_<split>.jsonl``: the first
   line of each greedy continuation of the 1.5B teacher, 32 tokens at most, bf16) are replayed
   through today's ``teach`` stage: generation is replaced by a lookup of the kept continuation,
   which ``teach`` then cuts at ``teacher.stop`` and puts in the task's canonical form with the
   library's code. Greedy decoding is deterministic and a generation that ends at a stop string is
   a prefix of the one that did not, so this is what the teacher gives today, without the hour of
   generation on 2 cores. Counted: answers with anything after the equation, before and after.
2. Students with the study's settings (its resolved config: SmolLM2-135M, 2 epochs, tuned alpha,
   best of 4 validation checkpoints) train on the replayed answers in ``runs/clean_targets/svamp``
   in this machine's native dtype, for comparison with the study's rows.

Writes ``benchmarks/results/clean_targets.{json,md}`` after each student; resumes from the run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_results  # noqa: E402


def runs_on(answer: str | None) -> bool:
    """Whether an answer holds anything besides one whole equation (words, stray brackets)."""
    from saliency_distill.data.answers import _leading_expression

    if answer is None:
        return False
    lead = _leading_expression(answer)
    return lead is None or lead.strip() != answer.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--modes", default="teacher-label")
    ap.add_argument("--run-dir", default="runs/clean_targets/svamp")
    ap.add_argument("--out", default="benchmarks/results/clean_targets")
    ap.add_argument("--summary-only", action="store_true", help="rewrite the results from the run folder")
    ap.add_argument("--eval-tokens", type=int, default=16,
                    help="student.eval.max_new_tokens (the study's 16 cuts the canonical form of a 3-number equation)")
    args = ap.parse_args()

    import logging

    import yaml

    logging.basicConfig(level=logging.WARNING)
    from study_state import state_folder

    from saliency_distill.config import build
    from saliency_distill.experiment import ExperimentConfig, run
    from saliency_distill.teacher import answer as answer_module

    state = state_folder("svamp")  # the study's saved run folder, unpacked from its archive
    resolved = yaml.safe_load((state / "config.yaml").read_text())
    resolved.update(run_dir=args.run_dir, preview=0)
    resolved["task"]["path"] = str(Path(args.data) / "svamp")
    resolved["teacher"]["model"]["dtype"] = "auto"  # it only tokenises here; nothing is generated
    resolved["analysis"]["faithfulness"] = False
    student = resolved["student"]
    student.update(modes=args.modes.split(","), seeds=[int(s) for s in args.seeds.split(",")])
    student["eval"]["max_new_tokens"] = args.eval_tokens
    student["train"]["bf16"] = "auto"  # the machine's native dtype (bf16 is emulated on AVX2-only CPUs)
    cfg = build(ExperimentConfig, resolved)

    kept = {split: {r["id"]: r for r in map(json.loads, (state / "teacher" / f"answers_{split}.jsonl").open())}
            for split in cfg.teacher.splits}
    by_prompt: dict[str, str] = {}

    def replay(lm: Any, prompts: list[str], *_: Any, **__: Any) -> list[str]:
        return [by_prompt[p] for p in prompts]

    real_prompter = answer_module.make_prompter

    def remembering_prompter(task_cfg: Any, teacher_cfg: Any, train: list, tokenizer: Any = None) -> Any:
        prompter = real_prompter(task_cfg, teacher_cfg, train, tokenizer)
        from saliency_distill.data import prepare

        for split, examples in prepare(cfg.task, cfg.run_dir).items():
            for ex in examples:
                if ex.id in kept.get(split, {}):
                    by_prompt[prompter.render(ex).text] = kept[split][ex.id]["answer"]
        return prompter

    answer_module.generate_continuations = replay
    answer_module.make_prompter = remembering_prompter

    def summary() -> None:
        after = {s: [json.loads(line) for line in (Path(args.run_dir) / "teacher" / f"answers_{s}.jsonl").open()]
                 for s in cfg.teacher.splits}
        counts = {s: {"n": len(after[s]),
                      "runs_on_before": sum(runs_on(r["answer"]) for r in kept[s].values()),
                      "runs_on_after": sum(runs_on(r["answer"]) for r in after[s]),
                      "no_answer_after": sum(r["answer"] is None for r in after[s]),
                      "correct_before": sum(bool(r["correct"]) for r in kept[s].values()),
                      "correct_after": sum(bool(r["correct"]) for r in after[s])} for s in cfg.teacher.splits}
        records = [json.loads(p.read_text()) for p in sorted(Path(args.run_dir).glob("students/*/seed*/result.json"))]
        study = [json.loads(p.read_text()) for p in sorted(state.glob("students/*/seed*/result.json"))]
        payload = {"answers": counts, "students": records, "study_students": study, "machine": machine(),
                   "command": "python " + " ".join(a for a in sys.argv if a != "--summary-only"),
                   "eval_tokens": args.eval_tokens,
                   "examples": [{"before": kept["train"][r["id"]]["answer"], "after": r["answer"]}
                                for r in after["train"][:5]]}
        write_results(args.out, payload, table(payload))

    if not args.summary_only:
        run(cfg, on_stage=lambda stage, result, seconds: summary() if stage == "teach" else None)
    summary()


def table(p: dict[str, Any]) -> str:
    import statistics

    lines = ["# SVAMP teacher answers: cut at the stop strings and canonical", "",
             f"Command: `{p.get('command', 'python benchmarks/clean_targets.py')}` "
             f"({p['machine']['machine']}, {p['machine']['date']}).", "",
             "The study's teacher continuations (1.5B, 3-shot, greedy) replayed through today's teach stage.", "",
             "| split | n | with text after the equation: before | after | no answer after | teacher correct: "
             "before | after |", "|---|---:|---:|---:|---:|---:|---:|"]
    for split, c in p["answers"].items():
        lines.append(f"| {split} | {c['n']} | {c['runs_on_before']} | {c['runs_on_after']} | {c['no_answer_after']} | "
                     f"{c['correct_before']} | {c['correct_after']} |")
    lines += ["", "Train answers, before -> after:", ""]
    lines += [f"- `{e['before']}` -> `{e['after']}`" for e in p["examples"]]

    def row(records: list[dict[str, Any]], mode: str) -> str:
        accs = [100 * r["accuracy"] for r in records if r.get("mode") == mode and r.get("accuracy") is not None]
        if not accs:
            return "-"
        spread = f" ± {statistics.stdev(accs):.1f}" if len(accs) > 1 else ""
        return f"{statistics.mean(accs):.1f}{spread} ({', '.join(f'{a:.1f}' for a in accs)})"

    lines += ["", "Students (SmolLM2-135M, the study's settings; test accuracy %, mean ± std (per seed)); the clean "
              f"column generates up to {p.get('eval_tokens', 16)} tokens per answer (the study: 16):", "",
              "| mode | study (raw targets, bf16) | clean targets (this machine's dtype) |", "|---|---|---|"]
    for mode in ("standard", "teacher-label", "saliency"):
        lines.append(f"| {mode} | {row(p['study_students'], mode)} | {row(p['students'], mode)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
