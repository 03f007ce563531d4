"""Commands that use a trained student: ``saliency-distill predict`` and ``export``.

A student is named by a run folder with ``--mode`` and ``--seed`` (its kept weights) or by any
student model folder (``--model``: a kept ``model/`` or an exported folder). Every check that can
fail runs before anything is written, and outputs are written under a temporary name and
renamed, so a refused command leaves no file behind.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

FIELD_PREFIX = "task.fields."


def _field_overrides(args: Sequence[str]) -> dict[str, Any]:
    """The ``task.fields`` mapping given by an optional YAML file and ``task.fields.*=value``
    overrides; any other key is an error (predict reads nothing else from a config)."""
    from ..config import apply_overrides, load_yaml

    path, overrides = None, []
    for a in args:
        if "=" in a:
            key = a.partition("=")[0].strip()
            if not key.startswith(FIELD_PREFIX):
                raise ConfigError(f"config key '{key}': predict maps its --input file with task.fields.* keys only")
            overrides.append(a)
        elif path is None:
            path = a
        else:
            raise ConfigError(f"unexpected argument '{a}' (one CONFIG.yaml, then task.fields.*=value overrides)")
    data = apply_overrides(load_yaml(path) if path is not None else {}, overrides)
    fields = (data.get("task") or {}).get("fields") or {}
    if not isinstance(fields, dict):
        raise ConfigError("config key 'task.fields': expected a mapping")
    return fields


def _student_folder(ns: argparse.Namespace) -> Path:
    from ..student.predict import run_student_folder

    if (ns.run is None) == (ns.model is None):
        raise ConfigError("name the student with --run RUN_DIR --mode MODE [--seed S] or with --model FOLDER")
    if ns.model is not None:
        if ns.mode is not None:
            raise ConfigError("--mode and --seed name a student of a run folder (--run), not of --model")
        return Path(ns.model)
    if ns.mode is None:
        raise ConfigError("--run needs --mode (the training mode of the student to use)")
    return run_student_folder(ns.run, ns.mode, ns.seed)


def cmd_predict(ns: argparse.Namespace) -> int:
    from ..config import build
    from ..data import FieldMap, load_prepared
    from ..student.predict import Item, default_fields, load_student, predict, read_input, write_predictions_file
    from ..student.record import read_record

    if (ns.input is None) == (ns.split is None):
        raise ConfigError("give the examples with --input FILE or --split SPLIT (a split of the run's prepared data)")
    if ns.split is not None and ns.run is None:
        raise ConfigError("--split reads the prepared data of a run folder: it needs --run")
    if ns.split is not None and ns.args:
        raise ConfigError("task.fields.* map an --input file; --split reads the run's prepared data")
    if ns.batch_size < 1 or (ns.max_new_tokens is not None and ns.max_new_tokens < 1):
        raise ConfigError(f"--batch-size {ns.batch_size} and --max-new-tokens {ns.max_new_tokens}: must be >= 1")
    if Path(ns.output).is_dir():
        raise ConfigError(f"--output {ns.output}: is a folder; give the predictions file to write")
    folder = _student_folder(ns)
    record = read_record(folder)  # a folder that is not a student fails here, before the examples are read
    if ns.input is not None:
        fields = build(FieldMap, {**default_fields(record), **_field_overrides(ns.args)}, prefix=FIELD_PREFIX)
        items = read_input(ns.input, fields, arithmetic=record["task"]["name"] == "svamp",
                           names=default_fields(record)["content"])
    else:
        items = [Item(ex, ex.label) for ex in load_prepared(ns.run, ns.split)]
    student = load_student(folder)
    rows = predict(student, items, ns.batch_size, ns.max_new_tokens, progress=not ns.no_progress)
    out = write_predictions_file(ns.output, rows)
    accuracy = f", accuracy {out['accuracy']:.4f} on {out['labelled']} labelled" if out["labelled"] else ""
    rate = f"{out['examples_per_s']:.2f} examples/s" if out["examples_per_s"] else "n/a examples/s"
    print(f"wrote {out['n']} predictions to {ns.output} ({rate}{accuracy})")
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from ..reporting.export import export_student

    command = "saliency-distill " + shlex.join(["export", "--run", str(ns.run), "--mode", ns.mode, "--seed",
                                                 str(ns.seed), "--output", str(ns.output)])
    out = export_student(ns.run, ns.mode, ns.seed, ns.output, overwrite=ns.overwrite, command=command)
    print(f"exported {ns.mode} seed {ns.seed} of {ns.run} to {out} (model card: {out}/README.md)")
    return 0


def add_use_commands(sub: Any) -> None:
    """Register ``predict`` and ``export`` on the CLI's subparsers."""
    p = sub.add_parser("predict", help="answer examples with a trained student (a run's kept weights or a "
                       "student folder); write predictions JSONL")
    p.add_argument("args", nargs="*", metavar="CONFIG|task.fields.KEY=VALUE",
                   help="optional CONFIG.yaml (its task.fields), then task.fields.* overrides mapping --input")
    p.add_argument("--run", help="run folder holding the student (with --mode and --seed)")
    p.add_argument("--mode", help="training mode of the student in --run")
    p.add_argument("--seed", type=int, default=0, help="seed of the student in --run (default 0)")
    p.add_argument("--model", help="a student model folder instead (kept model/ or exported folder)")
    p.add_argument("--input", help="JSONL / JSON / CSV / Parquet file to answer, mapped like the file task")
    p.add_argument("--split", help="answer this split of the run's prepared data instead (train, validation, test)")
    p.add_argument("--output", required=True, help="predictions JSONL to write")
    p.add_argument("--batch-size", type=int, default=16, help="examples per generation / scoring batch")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="tokens generated per answer (default: the student's evaluation setting)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="write a run's kept student as a standalone Hugging Face folder with a "
                       "model card")
    p.add_argument("--run", required=True, help="run folder holding the student")
    p.add_argument("--mode", required=True, help="training mode of the student")
    p.add_argument("--seed", type=int, default=0, help="seed of the student (default 0)")
    p.add_argument("--output", required=True, help="folder to write (must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    p.set_defaults(func=cmd_export)
