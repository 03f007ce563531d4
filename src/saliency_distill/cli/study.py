"""Commands that run studies on top of the stages: ``saliency-distill curve`` and ``tune``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def _fractions(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--fractions {text!r}: give comma-separated shares such as 0.1,0.25,0.5,1") from None


def cmd_curve(ns: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from ..experiment import save_resolved
    from ..study import run_curve

    cfg = load(ns)
    fractions = _fractions(ns.fractions)
    save_resolved(cfg, replace=False)

    def show(fraction: float, records: list[dict[str, Any]]) -> None:
        accs = ", ".join(f"{r['mode']} seed {r['seed']} {100 * r['accuracy']:.1f}%" for r in records)
        print(f"{100 * fraction:g}% of train: {accs}", flush=True)

    out = run_curve(cfg, fractions, n_resamples=ns.resamples, overwrite=ns.overwrite, on_point=show)
    report = Path(cfg.run_dir) / "report"
    print((report / "curve.md").read_text(), end="")
    print(f"curve: {report}/curve.md, curve.json, curve.svg ({len(out['points'])} points)")
    return 0


def _list(text: str, kind: type = str) -> tuple[Any, ...]:
    try:
        return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{text!r}: expected comma-separated {kind.__name__} values") from None


def cmd_tune(ns: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from ..study.tune import TuneSpace, run_tune

    cfg = load(ns)
    space = TuneSpace(methods=_list(ns.methods), targets=_list(ns.targets), ks=_list(ns.ks, float),
                      alphas=_list(ns.alphas, float), survivors=ns.survivors,
                      validation_examples=ns.validation_examples, train_examples=ns.train_examples)

    def show(step: str, entry: dict[str, Any]) -> None:
        if step == "faithfulness":
            margin = "n/a" if entry["margin"] is None else f"{entry['margin']:.3f}"
            print(f"faithfulness {entry['method']} {entry['target']} k={entry['k']:g}: margin {margin}", flush=True)
        else:
            print(f"student {entry['name']}: validation {100 * entry['accuracy']:.1f}%", flush=True)

    out = run_tune(cfg, space, on_step=show)
    report = Path(cfg.run_dir) / "report"
    print((report / "tune.md").read_text(), end="")
    if out["chosen"] is not None:
        print(f"tuned config: {report}/tuned.yaml (saliency-distill run {report}/tuned.yaml)")
    return 0


def add_study_commands(sub: Any, cfg_help: str, load: Callable[[argparse.Namespace], Any]) -> None:
    """Register the study commands on the CLI's subparsers; ``load`` builds the experiment config."""
    p = sub.add_parser("curve", help="data-efficiency curve: every mode and seed on nested shares of the "
                       "train split (teacher and rationales computed once); table and plot in the report")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help=cfg_help)
    p.add_argument("--fractions", default="0.1,0.25,0.5,1", help="comma-separated shares of the train split")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of each point's interval")
    p.add_argument("--overwrite", action="store_true", help="replace student runs made under another config")
    p.set_defaults(func=lambda ns: cmd_curve(ns, load))

    p = sub.add_parser("tune", help="choose attribution method, target, k and alpha on the validation split: "
                       "faithfulness first, then budget students; writes report/tune.md and tuned.yaml")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help=cfg_help)
    p.add_argument("--methods", default="input_x_gradient,saliency,attention", help="attribution methods to try")
    p.add_argument("--targets", default="teacher,gold", help="attribution targets to try")
    p.add_argument("--ks", default="3,5,10", help="rationale sizes to try")
    p.add_argument("--alphas", default="0.5,0.7,0.9,0.95", help="multi-task weights to try on the survivors")
    p.add_argument("--survivors", type=int, default=2, help="most faithful candidates that get students")
    p.add_argument("--validation-examples", type=int, default=100, help="validation examples for faithfulness")
    p.add_argument("--train-examples", type=int, default=800,
                   help="train examples of each budget student (all when the split is smaller). Too few cannot tell "
                   "alphas apart: on e-SNLI SmolLM2 scored 40.7%% with 160 and 76-80%% with 800")
    p.set_defaults(func=lambda ns: cmd_tune(ns, load))
