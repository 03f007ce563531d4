"""Command line: ``saliency-distill <command> [CONFIG.yaml] [key=value ...]``.

Only this module prints. Every project error becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..config import help_table, load_config, to_dict
from ..errors import SaliencyDistillError
from ..experiment import ExperimentConfig, environment, preview, save_resolved

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
    return cfg


def cmd_prepare(ns: argparse.Namespace) -> int:
    from ..data import prepare, read_manifest

    cfg = _experiment(ns)
    splits = prepare(cfg.task, cfg.run_dir, overwrite=ns.overwrite)
    save_resolved(cfg)
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


def cmd_run(ns: argparse.Namespace) -> int:
    cfg = _experiment(ns)
    save_resolved(cfg)
    print(f"run {cfg.run_dir}: task {cfg.task.name}, teacher {cfg.teacher.name}, student {cfg.student.name}")
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

    p = sub.add_parser("prepare", help="materialise a task's train/validation/test splits")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help=cfg_help)
    p.add_argument("--overwrite", action="store_true", help="replace data prepared with another config")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("run", help="run the experiment's stages (now: prepare and a zero-shot preview)")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help=cfg_help)
    p.set_defaults(func=cmd_run)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if ns.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return ns.func(ns)
    except SaliencyDistillError as e:
        print(f"saliency-distill: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saliency-distill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
