from __future__ import annotations

import dataclasses
import json

import pytest

from saliency_distill.config import apply_overrides, build, config_hash, help_table, load_config, to_dict
from saliency_distill.errors import ConfigError
from saliency_distill.experiment import ExperimentConfig


def test_defaults_and_nested_overrides():
    cfg = load_config(ExperimentConfig, None, ["task.name=cqa", "task.max_train=50", "preview=3"])
    assert cfg.task.name == "cqa"
    assert cfg.task.max_train == 50
    assert cfg.preview == 3
    assert cfg.teacher.model.name == "qwen2.5-coder-0.5b-instruct"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_dir: runs/x\ntask:\n  name: svamp\n  seed: 3\n")
    cfg = load_config(ExperimentConfig, path, ["task.seed=7", "task.fields.content=[a, b]"])
    assert (cfg.run_dir, cfg.task.name, cfg.task.seed) == ("runs/x", "svamp", 7)
    assert cfg.task.fields.content == ["a", "b"]


def test_a_number_in_exponent_notation_is_a_number_where_yaml_reads_a_string(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("student:\n  train:\n    learning_rate: 3e-5\n")
    assert load_config(ExperimentConfig, path).student.train.learning_rate == 3e-5
    cfg = load_config(ExperimentConfig, None, ["student.train.learning_rate=2e-4", "student.alpha=5E-1"])
    assert (cfg.student.train.learning_rate, cfg.student.alpha) == (2e-4, 0.5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.nmae=cqa"], "unknown config key 'task.nmae'"),
        (["bogus=1"], "unknown config key 'bogus'"),
        (["preview=many"], "config key 'preview': expected an integer"),
        (["task.seed=1.5"], "config key 'task.seed': expected an integer"),
        (["teacher.model.trust_remote_code=yes please"], "config key 'teacher.model.trust_remote_code'"),
        (["teacher.model.kind=encoder"], "config key 'teacher.model.kind'"),
        (["task.test_fraction=1.5"], "task.test_fraction"),
        (["teacher.model.dtype=int8"], "dtype"),
        (["attribution.method=gradcam"], "unknown method 'gradcam'"),
        (["task=3"], "config key 'task': expected a mapping"),
        (["student.train.learning_rate=fast"], "config key 'student.train.learning_rate': expected a number"),
        (["student.train.learning_rate=2e-4x"], "config key 'student.train.learning_rate': expected a number"),
    ],
)
def test_bad_config_is_one_line_error(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(ExperimentConfig, None, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task:\n  name: cqa\n  seed: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(ExperimentConfig, path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(ExperimentConfig, tmp_path / "nope.yaml")


def test_config_is_frozen():
    cfg = build(ExperimentConfig, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.preview = 3  # type: ignore[misc]


def test_overrides_do_not_mutate_input():
    data = {"task": {"name": "cqa"}}
    out = apply_overrides(data, ["task.name=svamp"])
    assert data == {"task": {"name": "cqa"}}
    assert out == {"task": {"name": "svamp"}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(data, ["task.name"])


def test_hash_is_stable_and_sensitive():
    a = build(ExperimentConfig, {})
    b = build(ExperimentConfig, {})
    c = build(ExperimentConfig, {"task": {"seed": 1}})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)


def test_where_a_model_runs_is_not_part_of_any_hash():
    # a run finished on the CPU is reused on a GPU, and runs hashed before `device` existed stay valid
    a = build(ExperimentConfig, {"student": {"model": {"device": "cpu"}}, "teacher": {"model": {"device": "cuda:1"}}})
    b = to_dict(build(ExperimentConfig, {}))
    assert config_hash(a) == config_hash(b)
    for section in ("student", "teacher"):
        del b[section]["model"]["device"]
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(build(ExperimentConfig, {"student": {"model": {"dtype": "bfloat16"}}}))


def test_every_key_has_help():
    rows = help_table(ExperimentConfig)
    keys = [k for k, _, _ in rows]
    assert "task.fields.label" in keys and "teacher.model.dtype" in keys and "attribution.steps" in keys
    assert all(text for _, _, text in rows), [k for k, _, t in rows if not t]


def test_partial_nested_section_keeps_field_defaults(tmp_path):
    # teacher.model defaults to the 0.5B teacher, not to ModelConfig's own default (the student).
    cfg = load_config(ExperimentConfig, None, ["teacher.model.dtype=bfloat16"])
    assert cfg.teacher.model.name == "qwen2.5-coder-0.5b-instruct"
    assert cfg.teacher.model.dtype == "bfloat16"
    path = tmp_path / "c.yaml"
    path.write_text("teacher:\n  train:\n    lora: true\n")
    cfg = load_config(ExperimentConfig, path)
    assert cfg.teacher.model.name == "qwen2.5-coder-0.5b-instruct" and cfg.teacher.train.lora is True


def test_listed_defaults_are_the_built_configs():
    """`config --keys` shows, for every key, the value a config built from nothing has."""
    built = to_dict(build(ExperimentConfig, {}))
    for key, default, _ in help_table(ExperimentConfig):
        value = built
        for part in key.split("."):
            value = value[part]
        assert json.loads(default) == value, key


@pytest.mark.parametrize("modes,stages", [
    (["standard", "llm-rationale", "random-words", "human-rationale"], ["prepare", "students", "report"]),
    (["teacher-label"], ["prepare", "teach", "students", "report"]),
    (["standard", "saliency"], ["prepare", "teach", "attribute", "analyze", "students", "report"]),
])
def test_the_pipeline_runs_only_the_stages_its_modes_need(modes, stages):
    from saliency_distill.experiment import needed_stages

    assert needed_stages(build(ExperimentConfig, {"student": {"modes": modes}})) == stages


def test_reuse_is_announced_once_per_output(caplog, tmp_path):
    import logging

    from saliency_distill.run_dir import announce_reuse

    log = logging.getLogger("saliency_distill.test_reuse")
    with caplog.at_level(logging.DEBUG, logger="saliency_distill.test_reuse"):
        for _ in range(3):
            announce_reuse(log, "prepared data", tmp_path / "data")
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.DEBUG, logging.DEBUG]
