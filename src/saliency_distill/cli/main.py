"""Command line: ``saliency-distill <command> [CONFIG.yaml] [key=value ...]``.

Only this module prints. Every project error becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..config import help_table, load_config, to_dict
from ..errors import SaliencyDistillError
from ..experiment import (
    ExperimentConfig,
    analyze_stage,
    attribute_stage,
    needed_stages,
    report_stage,
    run,
    save_resolved,
    student_stage,
    teach_stage,
)
from ..study.preview import environment, preview
from .show import NEXT_STEP, print_analysis, print_teacher, try_student
from .study import add_study_commands
from .use import add_use_commands

logger = logging.getLogger("saliency_distill")


def _split_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    config = None
    overrides = []
    for a in args:
        if "=" in a:
            overrides.append(a)
        elif config is None:
            config = a
        else:
            raise SaliencyDistillError(f"unexpected argument '{a}' (one CONFIG.yaml, then key=value overrides)")
    return config, overrides


def _experiment(ns: argparse.Namespace) -> ExperimentConfig:
    path, overrides = _split_args(ns.args)
    cfg = load_config(ExperimentConfig, path, overrides)
    ns.cfg = cfg  # main() records it in the run folder once the command has succeeded
    return cfg


def cmd_prepare(ns: argparse.Namespace) -> int:
    from ..data import prepare, read_manifest

    cfg = _experiment(ns)
    splits = prepare(cfg.task, cfg.run_dir, overwrite=ns.overwrite)
    save_resolved(cfg, replace=False)
    manifest = read_manifest(cfg.run_dir)
    print(f"task {cfg.task.name}: prepared in {cfg.run_dir}/data")
    for split, examples in splits.items():
        extra = []
        if manifest["with_llm_rationale"][split]:
            extra.append(f"{manifest['with_llm_rationale'][split]} with LLM rationale")
        if manifest["with_human_rationale"][split]:
            extra.append(f"{manifest['with_human_rationale'][split]} with human rationale")
        print(f"  {split:<10} {len(examples):>6} examples" + (f"  ({', '.join(extra)})" if extra else ""))
    return 0


def cmd_teach(ns: argparse.Namespace) -> int:
    cfg = _experiment(ns)
    save_resolved(cfg, replace=False)
    print_teacher(teach_stage(cfg, overwrite=ns.overwrite))
    print(f"wrote {cfg.run_dir}/teacher/")
    return 0


def cmd_attribute(ns: argparse.Namespace) -> int:
    cfg = _experiment(ns)
    save_resolved(cfg, replace=False)
    for split, res in attribute_stage(cfg, overwrite=ns.overwrite).items():
        rate = f", {res['examples_per_s']:.2f} examples/s" if res["examples_per_s"] else ""
        print(f"{split}: {res['rows']} rationales in {res['path']} ({res['new']} new{rate})")
    return 0


def cmd_analyze(ns: argparse.Namespace) -> int:
    cfg = _experiment(ns)
    for split, summary in analyze_stage(cfg).items():
        print_analysis(split, summary)
        print(f"  wrote {cfg.run_dir}/analysis/{split}.json and {split}.html")
    return 0


def _print_results(cfg: ExperimentConfig, records: list[dict], report) -> None:
    from pathlib import Path

    from ..reporting import aggregate, markdown_table
    from ..reporting.significance import headline

    rows = aggregate(records)
    print(markdown_table(rows), end="")
    saved = Path(report) / "significance.json"  # written by the main process only
    sentence = headline(json.loads(saved.read_text(encoding="utf-8")), rows) if saved.is_file() else None
    if sentence:
        print(sentence)
    print(f"report: {report}/report.html (open it in a browser; results.md and results.csv beside it)")
    print(try_student(cfg, records, report))
    print(f"next, {NEXT_STEP}")


def cmd_train(ns: argparse.Namespace) -> int:
    cfg = _experiment(ns)
    save_resolved(cfg, replace=False)
    records = student_stage(cfg, overwrite=ns.overwrite)
    _print_results(cfg, records, report_stage(cfg, records))
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    cfg = _experiment(ns)
    save_resolved(cfg, replace=False)
    modes = cfg.student.modes
    attributed = "attribute" in needed_stages(cfg)  # as the report's title decides
    print(f"run {cfg.run_dir}: task {cfg.task.name}, teacher {cfg.teacher.model.name}, "
          + (f"attribution {cfg.attribution.method} k={cfg.rationale.k:g}, " if attributed else "")
          + f"student {cfg.student.model.name}, modes {', '.join(modes)}, seeds {cfg.student.seeds}")

    def show(stage: str, result: Any, seconds: float) -> None:
        if stage == "prepare":
            print("data: " + ", ".join(f"{k} {len(v)}" for k, v in result.items()))
        elif stage == "teach":
            print_teacher(result)
        elif stage == "attribute":
            for split, res in result.items():
                rate = f", {res['examples_per_s']:.2f} examples/s" if res["examples_per_s"] else ""
                print(f"{split}: {res['rows']} rationales ({res['new']} new{rate})")
        elif stage == "analyze":
            for split, summary in result.items():
                print_analysis(split, summary)

    results = run(cfg, on_stage=show, overwrite=ns.overwrite)
    _print_results(cfg, results["students"], results["report"])
    return 0


def cmd_preview(ns: argparse.Namespace) -> int:
    cfg = _experiment(ns)
    save_resolved(cfg, replace=False)
    print(f"run {cfg.run_dir}: task {cfg.task.name}, teacher {cfg.teacher.model.name}, "
          f"student {cfg.student.model.name}")
    result = preview(cfg)
    print(f"zero-shot preview on {result['n']} test examples (choice log-likelihood):")
    print(f"  {'role':<8} {'model':<30} {'params':>8} {'acc(sum)':>9} {'acc(mean)':>10}")
    for role, row in result["models"].items():
        print(f"  {role:<8} {row['model']:<30} {row['parameters'] / 1e6:>7.0f}M "
              f"{row['accuracy_sum']:>9.3f} {row['accuracy_mean']:>10.3f}")
    print(f"wrote {cfg.run_dir}/preview.json and {cfg.run_dir}/config.yaml")
    return 0


def cmd_models(ns: argparse.Namespace) -> int:
    from ..io import cache_dir
    from ..models import EMBEDDED_MODELS, load_model
    from ..models.gguf import part_paths

    for name, m in EMBEDDED_MODELS.items():
        try:
            part_paths(m)
            installed = "installed"
        except SaliencyDistillError:
            installed = f"not installed ({m.requirements})"
        converted = (cache_dir() / "models" / name).is_dir()
        print(f"{name:<30} {m.role:<48} {installed}{', converted' if converted else ''}")
    for name in ns.load or ():
        lm = load_model(name)
        print(f"loaded {name}: {lm.kind}, {lm.model.num_parameters() / 1e6:.0f}M parameters, from {lm.path}")
    return 0


def cmd_tasks(ns: argparse.Namespace) -> int:
    from ..data import TASKS

    for name, task in TASKS.items():
        print(f"{name:<8} {task.description}")
    return 0


def cmd_config(ns: argparse.Namespace) -> int:
    if ns.keys:
        for key, default, text in help_table(ExperimentConfig):
            print(f"{key:<32} {default:<30} {text}")
        return 0
    import yaml

    cfg = _experiment(ns)
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), end="")
    return 0


def cmd_env(ns: argparse.Namespace) -> int:
    print(json.dumps(environment(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency-distill",
        description="Distil a teacher's saliency rationales into a small student model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True)
    cfg_help = "optional CONFIG.yaml, then key=value overrides (e.g. task.name=cqa task.path=DIR)"
    # (command, function, help, what --overwrite replaces or None)
    stages = [
        ("prepare", cmd_prepare, "materialise a task's train/validation/test splits", "data prepared"),
        ("teach", cmd_teach, "fine-tune the teacher (optional) and record its answers and accuracy",
         "teacher outputs (answers, fine-tuned model) made"),
        ("attribute", cmd_attribute, "attribute the teacher's answers and write the rationale store",
         "a store made"),
        ("analyze", cmd_analyze, "answer-overlap figures, faithfulness (opt-in) and an HTML page", None),
        ("train", cmd_train, "train and evaluate the student in every mode and seed; write the report",
         "student runs made"),
        ("preview", cmd_preview, "zero-shot answers of teacher and student on a few test questions", None),
        ("run", cmd_run, "the whole experiment: prepare, teach, attribute, analyze, train, report",
         "every stage's outputs (data, teacher outputs, stores, student runs) made"),
    ]
    for name, func, text, replaces in stages:
        p = sub.add_parser(name, help=text)
        p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help=cfg_help)
        if replaces:
            p.add_argument("--overwrite", action="store_true", help=f"replace {replaces} under another config")
        p.set_defaults(func=func)

    p = sub.add_parser("models", help="list the embedded models; --load converts and loads some")
    p.add_argument("--load", nargs="+", metavar="NAME", help="model names, folders or hub ids to load")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("tasks", help="list the built-in tasks")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("config", help="print the resolved config, or every key with --keys")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help=cfg_help)
    p.add_argument("--keys", action="store_true", help="list every config key, its default and help")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("env", help="print library versions and the machine")
    p.set_defaults(func=cmd_env)
    add_study_commands(sub, cfg_help, _experiment)
    add_use_commands(sub)
    return parser


def _quiet_libraries() -> None:
    """No progress bars or info logs from transformers / datasets / the hub client."""
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()


STAGE_COMMANDS = ("prepare", "teach", "attribute", "analyze", "train", "run", "curve", "tune")


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if ns.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if ns.quiet:
        _quiet_libraries()
    from ..allocator import hold_freed_memory
    from ..distributed import is_main

    hold_freed_memory()  # training steps reuse their freed buffers instead of page-faulting them in again

    if not is_main():  # under `accelerate launch` only the main process prints
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    try:
        code = ns.func(ns)
        cfg = getattr(ns, "cfg", None)
        if code == 0 and cfg is not None and ns.command in STAGE_COMMANDS and is_main():
            save_resolved(cfg)  # the run folder now holds what this config made
        return code
    except SaliencyDistillError as e:
        print(f"saliency-distill: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saliency-distill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
