"""benchmarks/study.py refuses, in one line and at once, a machine that would emulate its bfloat16."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from saliency_distill.experiment import ExperimentConfig
from saliency_distill.models import loading

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import study  # noqa: E402


def _cfg(teacher_dtype: str, student_bf16: bool) -> ExperimentConfig:
    from saliency_distill.config import load_config

    return load_config(ExperimentConfig, None, [f"teacher.model.dtype={teacher_dtype}", "teacher.model.device=cpu",
                                                f"student.train.bf16={str(student_bf16).lower()}",
                                                "student.model.device=cpu"])


@pytest.mark.parametrize("teacher_dtype, student_bf16, named", [
    ("bfloat16", True, "teacher.model.dtype and student.train.bf16"),
    ("float32", True, "student.train.bf16"),
    ("bfloat16", False, "teacher.model.dtype"),
])
def test_emulated_bf16_exits_3_naming_the_keys(teacher_dtype, student_bf16, named, monkeypatch, capsys):
    monkeypatch.setattr(loading, "_cpu_native", lambda dtype: False)
    with pytest.raises(SystemExit) as stop:
        study.refuse_emulated_bf16(_cfg(teacher_dtype, student_bf16))
    assert stop.value.code == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"study: {named} ask for bfloat16") and "\n" not in err


def test_native_or_float32_runs(monkeypatch):
    monkeypatch.setattr(loading, "_cpu_native", lambda dtype: True)
    assert study.refuse_emulated_bf16(_cfg("bfloat16", True)) is None
    monkeypatch.setattr(loading, "_cpu_native", lambda dtype: False)
    assert study.refuse_emulated_bf16(_cfg("float32", False)) is None
