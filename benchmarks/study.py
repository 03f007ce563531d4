"""The study: does the teacher's saliency make the student better? One dataset per call, resumable.

    nice python benchmarks/study.py --dataset esnli --curve 0.1,0.25,0.5,1
    nice python benchmarks/study.py --dataset cqa --curve 0.1,0.25,0.5,1
    nice python benchmarks/study.py --dataset anli1
    nice python benchmarks/study.py --dataset svamp --train 720

For a dataset: its config (configs/<dataset>.yaml: the teacher chosen in the teacher-quality
table), `--train` train examples, the whole test split, SmolLM2-135M-Instruct students (2 epochs,
batch 8, lr 1e-4, bf16; validation accuracy 4 times a run, the best weights kept; greedy accuracy,
without the ranked-choice scoring);
1. `tune` on the validation split (attribution method, target, k by faithfulness; alpha per rationale mode by budget
   students): never the test split;
2. `run` with the chosen settings: every mode x seed, the report with the paired intervals;
3. optionally the data-efficiency curve (the teacher and rationales of step 2 reused).
Every step resumes from its files (``runs/study/<dataset>``); after tune, after the students and after
the curve the summary in ``benchmarks/results/study.md`` / ``study.json`` is rewritten with every
dataset as far as it has come.

``runs/`` is not committed and the study outlives one machine: ``benchmarks/study_state.py save
--dataset <name>`` copies what took compute into ``benchmarks/state/<name>.tar.xz`` (committed, without
the dataset's text) and ``restore`` puts it back before the next call resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_results  # noqa: E402

MODES = "[standard,teacher-label,saliency,random-words,llm-rationale,soft-label]"
OUT = "benchmarks/results/study"
SITTING = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # this process: one sitting of the study


def study_config(args: argparse.Namespace) -> Any:
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig

    modes = MODES.replace(",soft-label", "") if args.dataset == "svamp" else MODES  # free-form answers
    overrides = [f"run_dir=runs/study/{args.dataset}", f"task.path={Path(args.data) / args.dataset}",
                 f"task.max_train={args.train}", f"task.max_validation={args.validation}", "task.max_test=null",
                 f"student.modes={modes}", f"student.seeds=[{args.seeds}]", "student.train.epochs=2",
                 "student.train.batch_size=8", "student.train.learning_rate=1.0e-4", "student.train.bf16=true",
                 "student.eval.max_new_tokens=16", "student.eval.choice_scoring=false",  # the study reads greedy
                 "student.early_stopping.enabled=true",
                 "student.early_stopping.evaluations=4",  # 8 took ~3 min a student, most of a 10%-curve one
                 "attribution.splits=[train]",
                 "analysis.faithfulness=true",
                 f"analysis.faithfulness_max_examples={args.faithfulness_examples}", *args.set]
    return load_config(ExperimentConfig, Path("configs") / f"{args.dataset}.yaml", overrides)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, choices=["cqa", "svamp", "anli1", "esnli"])
    ap.add_argument("--data", default="../shared/data/dsbs")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--validation", type=int, default=200)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--curve", default=None, help="train shares of the data-efficiency curve, e.g. 0.1,0.25,0.5,1")
    ap.add_argument("--faithfulness-examples", type=int, default=200)
    ap.add_argument("--tune-train", type=int, default=800, help="train examples of each budget student in tune")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further config overrides")
    ap.add_argument("--allow-emulated-bf16", action="store_true",
                    help="run even where bfloat16 is emulated (AVX2-only CPUs: 5-75x slower than float32)")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from saliency_distill.experiment import run, save_resolved
    from saliency_distill.study import run_curve
    from saliency_distill.study.tune import TuneSpace, run_tune, with_teacher_splits

    cfg = study_config(args)
    if not args.allow_emulated_bf16:
        refuse_emulated_bf16(cfg)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    tuned = run_tune(cfg, TuneSpace(train_examples=args.tune_train))
    timings["tune"] = round(time.perf_counter() - started, 1)
    chosen = tuned["chosen"]
    if chosen is not None:
        cfg = replace(cfg, attribution=replace(cfg.attribution, method=chosen["method"], target=chosen["target"]),
                      rationale=replace(cfg.rationale, k=chosen["k"]))
    cfg = replace(cfg, student=replace(cfg.student, alpha_by_mode={**cfg.student.alpha_by_mode,
                                                                   **tuned["alpha_by_mode"]}))
    cfg = with_teacher_splits(cfg, TuneSpace())  # the teacher answers tune asked for are reused
    save_resolved(cfg)
    write_summary(args, cfg, tuned, None, None, timings)  # committed as it comes: tune, students, curve

    def stage_time(stage: str, result: Any, seconds: float) -> None:
        timings[stage] = round(seconds, 1)
        print(f"{args.dataset}: {stage} done in {seconds:.0f} s", flush=True)

    results = run(cfg, on_stage=stage_time)
    write_summary(args, cfg, tuned, results, None, timings)
    if args.curve:
        started = time.perf_counter()
        curve = run_curve(cfg, [float(f) for f in args.curve.split(",")])
        timings["curve"] = round(time.perf_counter() - started, 1)
        write_summary(args, cfg, tuned, results, curve, timings)


def refuse_emulated_bf16(cfg: Any) -> None:
    """Exit (3) where the study's bfloat16 (teacher weights, student autocast) would be emulated:
    its saved state was computed in hardware bf16, and float32 here would not be the same numbers,
    while emulated bf16 attributes a batch of 8 e-SNLI prompts in about an hour and a half
    (benchmarks/results/cpu_dtype.md): the study would make no progress in a session."""
    from saliency_distill.models import native_dtype
    from saliency_distill.models.loading import resolve_device

    asked = [key for key, dtype, device in (
        ("teacher.model.dtype", cfg.teacher.model.dtype, cfg.teacher.model.device),
        ("student.train.bf16", "bfloat16" if cfg.student.train.bf16 else "float32", cfg.student.model.device))
        if not native_dtype(dtype, resolve_device(device))]
    if asked:
        import torch

        print(f"study: {' and '.join(asked)} ask for bfloat16, which this {torch.backends.cpu.get_cpu_capability()} "
              "CPU emulates (5-75x slower than float32, benchmarks/results/cpu_dtype.md); run the study on a machine "
              "with AVX-512 BF16 or AMX, or pass --allow-emulated-bf16", file=sys.stderr)
        sys.exit(3)


def write_summary(args: argparse.Namespace, cfg: Any, tuned: dict[str, Any], results: dict[str, Any] | None,
                  curve: dict[str, Any] | None, timings: dict[str, float]) -> None:
    """Rewrite study.json / study.md with this dataset's entry as far as it has come: after tune
    (``results`` None: no students yet), after the students, after the curve."""
    from saliency_distill.experiment import prepare_stage
    from saliency_distill.reporting import aggregate

    run_dir = Path(cfg.run_dir)
    report = run_dir / "report"
    teacher = json.loads((run_dir / "teacher" / "metrics.json").read_text())
    analysis = json.loads((run_dir / "analysis" / "train.json").read_text()) if (run_dir / "analysis" / "train.json"
                                                                                  ).is_file() else {}
    splits = results["prepare"] if results else prepare_stage(cfg)  # prepared already: read from its files
    remade_path = run_dir / "teacher" / "finetune" / "remade.json"  # fine-tuned again on a later machine
    remade = json.loads(remade_path.read_text()) if remade_path.is_file() else None
    entry = {"dataset": args.dataset, "command": machine()["command"], "train": len(splits["train"]),
             "test": len(splits["test"]), "seeds": args.seeds, "chosen": tuned["chosen"],
             "alpha_by_mode": tuned.get("alpha_by_mode"), "tune_timing": tuned["timing"], "timings": timings,
             "recorded": recorded_seconds(tuned, results),
             "teacher": {"model": teacher.get("model"), "accuracy": teacher.get("accuracy"), "remade": remade},
             "stage": "students running" if not results else "curve running" if args.curve and not curve else "done",
             "table": aggregate(results["students"]) if results else [],
             "significance": json.loads((report / "significance.json").read_text()) if results else [],
             "overlap": analysis.get("gold_containment"), "faithfulness": analysis.get("faithfulness"),
             "curve": curve["points"] if curve else None,
             "curve_train_examples": curve["train_examples"] if curve else None}
    entry["files"] = copy_report_files(args.dataset, report)
    path = Path(OUT + ".json")
    done = json.loads(path.read_text())["datasets"] if path.is_file() else {}
    entry["sittings"] = with_sitting((done.get(args.dataset) or {}).get("sittings") or [], SITTING, timings)
    done[args.dataset] = entry
    write_results(OUT, {"meta": machine(), "datasets": done}, markdown(done))


def recorded_seconds(tuned: dict[str, Any], results: dict[str, Any] | None) -> dict[str, Any]:
    """Compute kept per item in the run's files, so summed across sittings (``timings`` is this
    sitting's wall time alone: a stage resumed from its files shows the few seconds it took here):
    tune's faithfulness scoring per candidate, and training per budget and per run student. Not
    recorded: attributing the train examples, and the students' validation and test passes."""
    def total(values: list[Any]) -> float:
        return round(sum(v for v in values if isinstance(v, (int, float))), 1)

    students = (results or {}).get("students") or []
    return {"tune_faithfulness_s": total([c.get("seconds") for c in tuned.get("faithfulness") or []]),
            "tune_students": len(tuned.get("students") or []),
            "tune_students_train_s": total([s.get("train_seconds") for s in tuned.get("students") or []]),
            "students": len(students), "students_train_s": total([s.get("train_seconds") for s in students])}


def with_sitting(sittings: list[dict[str, Any]], started: str, timings: dict[str, float]) -> list[dict[str, Any]]:
    """The dataset's sittings with this one's stage times (replacing what an earlier summary of this
    sitting wrote); a sitting that computed nothing (every stage resumed from its files: under a
    minute in all) is left out, so passing through a finished dataset adds no row."""
    kept = [s for s in sittings if s.get("started") != started]
    return kept + ([{"started": started, "timings": dict(timings)}] if sum(timings.values()) >= 60 else [])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def time_lines(d: dict[str, Any]) -> list[str]:
    """Where the dataset's compute went: wall time per stage summed over the recorded sittings (a
    resumed stage counts only what it took then), and the per-item compute the files recorded."""
    sittings = d.get("sittings") or []
    total: dict[str, float] = {}
    for s in sittings:
        for stage, seconds in s["timings"].items():
            total[stage] = total.get(stage, 0.0) + seconds
    wall = ", ".join(f"{stage} {seconds:.0f}" for stage, seconds in total.items())
    lines = [f"- Wall time per stage (s), summed over the {len(sittings)} sitting(s) that finished a stage since "
             f"{sittings[0]['started'][:10] if sittings else 'n/a'} (a sitting stopped mid-stage records "
             f"nothing for it): {wall or 'none recorded'}."]
    r = d.get("recorded")
    if r:
        text = (f"- Compute recorded in the run's files, over every sitting: tune's faithfulness scoring "
                f"{_hours(r['tune_faithfulness_s'])}, training its {r['tune_students']} budget students "
                f"{_hours(r['tune_students_train_s'])}")
        if r.get("students"):
            text += f"; training the run's {r['students']} students {_hours(r['students_train_s'])}"
        lines.append(text + " (not recorded: attributing the train examples, the validation and test passes).")
    return lines


def copy_report_files(dataset: str, report: Path) -> dict[str, str]:
    """The run's accuracy plot, curve plot and tune table beside study.md (runs/ is not committed):
    ``{what: file name}`` of those that exist; each written to a temporary name, then renamed."""
    import os
    import shutil

    out = {}
    for what, name in (("accuracy", "accuracy.svg"), ("curve", "curve.svg"), ("tune", "tune.md")):
        if (report / name).is_file():
            target = Path(f"{OUT}_{dataset}_{name}")
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(report / name, tmp)
            os.replace(tmp, target)
            out[what] = target.name
    return out


def _sig(d: dict[str, Any], mode: str, baseline: str) -> dict[str, Any] | None:
    return next((s for s in d["significance"] if s["mode"] == mode and s["baseline"] == baseline
                 and s.get("difference") is not None), None)


def targets(done: dict[str, Any]) -> list[str]:
    """The issue's targets, checked over the datasets done so far, with what each one means here."""
    beats = [n for n, d in done.items() if (s := _sig(d, "saliency", "standard")) and s["lower"] > 0]
    # matches: the interval includes 0; beats: it lies above 0
    matches = [n for n, d in done.items() if (s := _sig(d, "saliency", "llm-rationale")) and s["upper"] >= 0]
    curve_hits, curve_lines = [], []
    for n, d in done.items():
        cell = {(p["fraction"], p["mode"]): p for p in d.get("curve") or []}
        half, full = cell.get((0.5, "saliency")), cell.get((1.0, "standard"))
        if half and full:
            # matches: saliency's mean at 50% reaches standard's at 100%, or its interval contains it
            hit = half["mean"] >= full["mean"] or (half["upper"] is not None and half["upper"] >= full["mean"])
            curve_hits += [n] if hit else []
            band = "" if half["lower"] is None else f" [{half['lower']:.1f}, {half['upper']:.1f}]"
            curve_lines.append(f"{n}: saliency at 50% {half['mean']:.1f}{band} against standard at 100% "
                               f"{full['mean']:.1f}")
    n = sum(1 for d in done.values() if d["table"])  # datasets whose students are done
    return ["## Targets", "",
            f"- Saliency beats standard fine-tuning (paired 95% interval above 0) on >= 3 of 4 datasets: "
            f"{len(beats)} of {n} done ({', '.join(beats) or 'none'}).",
            f"- Saliency matches or beats the PaLM-rationale student (interval of saliency - llm-rationale not "
            f"below 0) on >= 2: {len(matches)} of {n} ({', '.join(matches) or 'none'}).",
            f"- On the curve, saliency at 50% of the data matches standard at 100% (mean at least as high, or "
            f"its interval reaching it) on >= 1: {len(curve_hits)} of {len(curve_lines)} with a curve"
            + (f" ({'; '.join(curve_lines)})." if curve_lines else "."), ""]


def _percent(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.1f}%"


def remade_lines(remade: dict[str, Any] | None) -> list[str]:
    """Where a later machine fine-tuned the teacher again (weights are not carried between machines):
    how many of the kept answers the remade teacher gives again."""
    if not remade:
        return []
    return [f"- The fine-tuned teacher was lost with a machine and fine-tuned again (same config); it gives the "
            f"kept answer on {remade.get('agree')} of {remade.get('checked')} {remade.get('split')} examples. "
            "Rationales attributed after that come from the remade teacher."]


def dataset_lines(name: str, d: dict[str, Any]) -> list[str]:
    """Teacher, answer overlap, faithfulness, plots and curve of one dataset."""
    from saliency_distill.analysis.overlap import format_difference
    from saliency_distill.study.curve import curve_table

    acc = (d["teacher"].get("accuracy") or {})
    teacher = ", ".join(f"{split} {_percent(100 * a['accuracy'])}" for split, a in acc.items()
                        if isinstance(a, dict) and a.get("accuracy") is not None) or "n/a"
    lines = [f"- Teacher accuracy: {teacher}.", *remade_lines(d["teacher"].get("remade")), *time_lines(d)]
    overlap = d.get("overlap") or {}
    mc = overlap.get("multiple_choice") or {}
    if mc.get("n"):  # none where the label is not among the input's words (NLI)
        lines.append(f"- Rationale words containing the gold answer: {_percent(mc.get('percent'))} of "
                     f"{mc.get('n', 0)} multiple-choice train examples (the paper: 68%).")
    faith = d.get("faithfulness") or {}
    for key, better in (("comprehensiveness", "higher"), ("sufficiency", "lower")):
        f = faith.get(key)
        if f:
            lines.append(f"- {key.capitalize()} ({better} is better): {f['saliency']} nats against {f['random']} for "
                         f"random words, difference {format_difference(f.get('difference'))} "
                         f"({faith.get('n')} train examples).")
    files = d.get("files") or {}
    if "accuracy" in files:
        lines.append(f"- Plot: [{files['accuracy']}]({files['accuracy']}).")
    if "tune" in files:
        lines.append(f"- Tuning (every candidate, budget student and its cost): [{files['tune']}]({files['tune']}).")
    lines.append("")
    if d.get("curve"):
        table = curve_table(d["curve"], d.get("curve_train_examples") or {}, name).splitlines()
        lines += ["### Data-efficiency curve", "", *table[2:]]  # without its own title
        if "curve" in files:
            lines += ["", f"![{name} curve]({files['curve']})"]
        lines.append("")
    return lines


def markdown(done: dict[str, Any]) -> str:
    lines = ["# The study: saliency-distilled students against standard fine-tuning and PaLM rationales", "",
             "SmolLM2-135M-Instruct students; settings chosen on each dataset's validation split by "
             "`saliency-distill tune`; test split read once. Accuracy % mean ± std over seeds; intervals: 95% "
             "paired cluster bootstrap over test examples and seeds.", ""]
    for name, d in done.items():
        chosen = d["chosen"] or {}
        lines += [f"## {name}", "", f"Command: `{d['command']}`", "",
                  f"Train {d['train']}, test {d['test']}, seeds {d['seeds']}; teacher {d['teacher']['model']}; "
                  f"chosen: method {chosen.get('method')}, target {chosen.get('target')}, k {chosen.get('k')}, "
                  "alpha " + (", ".join(f"{m} {a:g}" for m, a in (d.get("alpha_by_mode") or {}).items())
                              or str(chosen.get("alpha"))) + ".", "",
                  "| mode | seeds | accuracy % |", "|---|---:|---:|"]
        if not d["table"]:
            lines.append("| (the students are training: this table fills in when every mode x seed is done) | | |")
        for row in d["table"]:
            mean, std = row["accuracy_mean"], row["accuracy_std"]
            acc = "n/a" if mean is None else f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")
            lines.append(f"| {row['mode']} | {row['n_seeds']} | {acc} |")
        lines += [""] + [f"- {s['mode']} vs {s['baseline']}: " + (
            "no interval" if s.get("difference") is None else
            f"{s['difference']:+.2f} points [{s['lower']:.2f}, {s['upper']:.2f}]"
            + (" (excludes 0)" if s["excludes_zero"] else " (includes 0)")) for s in d["significance"]] + [""]
        lines += dataset_lines(name, d)
        if d.get("stage") == "curve running":
            lines += ["The data-efficiency curve is running: it is added here when every share is done.", ""]
    lines[4:4] = targets(done)  # after the introduction
    lines += later_lines()
    return "\n".join(lines) + "\n"


def later_lines() -> list[str]:
    """What changed in the teacher's outputs after the study (clean SVAMP answers, e-SNLI calibration),
    from those benchmarks' results where they exist."""
    clean, calibration = Path("benchmarks/results/clean_targets.json"), Path("benchmarks/results/teacher_calibration.json")
    if not clean.is_file() and not calibration.is_file():
        return []
    lines = ["## After the study: the teacher's outputs made clean and calibrated (2026-12-06)", ""]
    if clean.is_file():
        c = json.loads(clean.read_text())
        train = c["answers"]["train"]
        lines += [f"SVAMP: {train['runs_on_before']} of {train['n']} train answers of the teacher ran on past the "
                  f"equation; cut at the stop strings and printed back as equations, {train['runs_on_after']} do, "
                  f"{train['no_answer_after']} holds none (`benchmarks/results/clean_targets.md`, with the "
                  "teacher-label students trained on them).", ""]
        longer = Path("benchmarks/results/clean_targets_32.json")
        accs = [s["accuracy"] for s in json.loads(longer.read_text())["students"]] if longer.is_file() else []
        if accs:
            lines += [f"Teacher-label students on the clean answers (32 answer tokens, fp32, {len(accs)} seeds): "
                      f"{100 * sum(accs) / len(accs):.1f}% ({', '.join(f'{100 * a:.1f}' for a in accs)}), against "
                      "the study's rows above (`benchmarks/results/clean_targets_32.md`).", ""]
    if calibration.is_file():
        rows = json.loads(calibration.read_text())["rows"]
        study = next((r for r in rows if r["kind"] == "study"), None)
        if study:
            test = study["results"]["test"]
            lines += ["e-SNLI teacher on test, per class (entailment / neutral / contradiction recall %): "
                      + "; ".join(f"{cal} {100 * test[cal]['accuracy']:.1f} ("
                                  + " / ".join(f"{100 * test[cal]['recall'][k]:.1f}"
                                               for k in ("entailment", "neutral", "contradiction")) + ")"
                                  for cal in ("none", "contextual", "prior") if cal in test)
                      + " (`benchmarks/results/teacher_calibration.md`).", ""]
    return lines + seed_lines()


def seed_lines(path: str = "benchmarks/results/seed_intervals.json") -> list[str]:
    """The low-data gains above again, with intervals that include the spread between training seeds."""
    if not Path(path).is_file():
        return []
    rows = [r for r in json.loads(Path(path).read_text())["rows"]
            if r["mode"] == "saliency" and r["share"] in ("25%", "50%")]
    lines = ["## After the study: intervals that include training noise (2026-12-06)", "",
             "The intervals above resample test examples with the trained students fixed. Over the 3 training seeds "
             "(`benchmarks/seed_intervals.py`, from the kept predictions; t interval over the per-seed differences, "
             "and a two-level bootstrap of seeds and examples):", ""]
    lines += [f"- {r['dataset']} {r['share']}, saliency - {r['baseline']}: {r['difference']:+.1f} points; examples "
              f"[{r['examples'][0]:+.1f}, {r['examples'][1]:+.1f}], two-level [{r['two_level'][0]:+.1f}, "
              f"{r['two_level'][1]:+.1f}], seed t [{r['seed_t'][0]:+.1f}, {r['seed_t'][1]:+.1f}]; per seed "
              + " / ".join(f"{d:+.1f}" for d in r["per_seed"]) + "." for r in rows]
    def above(key: str) -> str:
        hits = [f"{r['dataset']} {r['share']} vs {r['baseline']}" for r in rows if r[key][0] > 0]
        return ", ".join(hits) or "none"

    return lines + ["", f"Above 0 by the seed t interval: {above('seed_t')}. Above 0 by the two-level bootstrap: "
                    f"{above('two_level')} (with 3 seeds a bootstrap over seeds cannot draw a value outside the 3 it "
                    "has, so it is the narrower of the two; `benchmarks/results/seed_intervals.md`).", ""]


if __name__ == "__main__":
    main()
