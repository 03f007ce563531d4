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


def test_time_lines_sum_the_recorded_compute_over_sittings():
    """A resumed sitting's stage timer shows seconds; the recorded per-item compute is what the study cost."""
    tuned = {"faithfulness": [{"seconds": 1800.0}, {"seconds": 1800.0}, {}],
             "students": [{"train_seconds": 3600.0}, {"train_seconds": None}, {"train_seconds": 1800.0}]}
    results = {"students": [{"train_seconds": 7200.0}, {"train_seconds": 3600.0}]}
    recorded = study.recorded_seconds(tuned, results)
    assert recorded == {"tune_faithfulness_s": 3600.0, "tune_students": 3, "tune_students_train_s": 5400.0,
                        "students": 2, "students_train_s": 10800.0}
    sittings = study.with_sitting([], "2026-12-01T10:00:00Z", {"tune": 660.9, "attribute": 12.0})
    sittings = study.with_sitting(sittings, "2026-12-02T10:00:00Z", {"tune": 0.4, "students": 30.0})
    assert len(sittings) == 1  # resumed from its files: nothing computed, no row
    sittings = study.with_sitting(sittings, "2026-12-02T10:00:00Z", {"tune": 0.4, "students": 3600.0})
    sittings = study.with_sitting(sittings, "2026-12-02T10:00:00Z", {"tune": 0.4, "students": 7200.0})  # rewritten
    lines = study.time_lines({"sittings": sittings, "recorded": recorded})
    assert lines[0].endswith("summed over the 2 sitting(s) that finished a stage since 2026-12-01 "
                            "(a sitting stopped mid-stage records nothing for it): tune 661, attribute 12, students 7200.")
    assert "faithfulness scoring 1.0 h, training its 3 budget students 1.5 h; training the run's 2 students 3.0 h" \
        in lines[1]
    assert "training the run's" not in study.time_lines({"recorded": study.recorded_seconds(tuned, None)})[1]


def test_a_remade_teacher_is_named_with_its_agreement():
    assert study.remade_lines(None) == []
    (line,) = study.remade_lines({"split": "train", "checked": 40, "agree": 39})
    assert "fine-tuned again" in line and "39 of 40 train examples" in line
