"""Commands that run studies on top of the stages: ``saliency-distill curve``."""

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


def add_study_commands(sub: Any, cfg_help: str, load: Callable[[argparse.Namespace], Any]) -> None:
    """Register the study commands on the CLI's subparsers; ``load`` builds the experiment config."""
    p = sub.add_parser("curve", help="data-efficiency curve: every mode and seed on nested shares of the "
                       "train split (teacher and rationales computed once); table and plot in the report")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value", help=cfg_help)
    p.add_argument("--fractions", default="0.1,0.25,0.5,1", help="comma-separated shares of the train split")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of each point's interval")
    p.add_argument("--overwrite", action="store_true", help="replace student runs made under another config")
    p.set_defaults(func=lambda ns: cmd_curve(ns, load))
