"""The GPU code path: with `device: auto` every stage runs on the GPU and agrees with the CPU.

Skipped without CUDA (CI has none); run on a GPU machine with `python -m pytest tests/test_gpu.py`.
Each test loads the same tiny float32 model on both devices and compares numbers.
"""

from __future__ import annotations

import pytest
import torch

from saliency_distill.attribution import AttributionConfig, attribute, list_methods
from saliency_distill.models import ModelConfig, load_model
from saliency_distill.teacher import score_choices
from saliency_distill.training import TrainConfig, train_supervised
from saliency_distill.training.losses import OPTION, PREDICT

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

PROMPTS = [
    "Question: Where would you put a plate after washing it?\nAnswer Choices:\n(a) cupboard\n(b) table\nAnswer:",
    "Premise: Two women are embracing.\nHypothesis: Two women hug.\nAnswer:",
    "Luke scored 84 points after playing 2 rounds.\nEquation:",
]
ANSWERS = ["cupboard", "entailment", "( 84.0 / 2.0 )"]
PAIRS = list(zip(PROMPTS, ANSWERS)) * 3
QUICK = dict(batch_size=3, learning_rate=1e-3, logging_steps=1, save_steps=1000, progress_bar=False, max_steps=6)


def _both(folder, **kw):
    return (load_model(ModelConfig(name=str(folder), device="cpu", **kw)),
            load_model(ModelConfig(name=str(folder), device="cuda", **kw)))


def test_auto_puts_every_kind_of_model_on_the_gpu(tiny_model_dirs):
    for kind in ("llama", "qwen2", "t5"):
        lm = load_model(str(tiny_model_dirs[kind]))
        assert {p.device.type for p in lm.model.parameters()} == {"cuda"}, kind


def test_auto_is_the_gpu_of_this_process_local_rank(monkeypatch):
    from saliency_distill.models.loading import resolve_device

    assert resolve_device("auto") == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == "cuda:1"


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_choice_scores_on_the_gpu_equal_the_cpu_ones(tiny_model_dirs, kind):
    cpu, gpu = _both(tiny_model_dirs[kind])
    choices = [["cupboard", "table"], ["entailment", "neutral", "contradiction"], ["( 84.0 / 2.0 )", "( 2.0 * 84.0 )"]]
    a = score_choices(cpu, PROMPTS, choices, batch_size=2)
    b = score_choices(gpu, PROMPTS, choices, batch_size=2)
    assert a.lengths == b.lengths
    for x, y in zip(a.sums, b.sums):
        torch.testing.assert_close(torch.tensor(y), torch.tensor(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", list_methods())
def test_attribution_on_the_gpu_equals_the_cpu_one(tiny_model_dirs, method):
    cpu, gpu = _both(tiny_model_dirs["llama"])
    cfg = AttributionConfig(method=method, batch_size=2, steps=4, bf16=False)
    for a, b in zip(attribute(cpu, PROMPTS, ANSWERS, cfg), attribute(gpu, PROMPTS, ANSWERS, cfg)):
        assert a.token_ids == b.token_ids and a.offsets == b.offsets
        torch.testing.assert_close(torch.tensor(b.scores), torch.tensor(a.scores), rtol=1e-3, atol=1e-5)


def test_soft_label_training_on_the_gpu_equals_the_cpu_run(tiny_model_dirs, tmp_path):
    # the option-KL term (soft-label mode), with gradient accumulation: its step weights are
    # built next to the batch, on the GPU
    pairs, ids, tasks, scores = [], [], [], []
    for i, (prompt, gold) in enumerate(zip(PROMPTS[:2] * 2, ["cupboard", "entailment"] * 2)):
        options = ["cupboard", "table"] if i % 2 == 0 else ["entailment", "neutral", "contradiction"]
        pairs.append((prompt, gold))
        ids.append(f"e{i}")
        tasks.append(PREDICT)
        scores.append(None)
        for j, option in enumerate(options):
            pairs.append((prompt, option))
            ids.append(f"e{i}")
            tasks.append(OPTION)
            scores.append(-0.5 * (j + 1))
    cfg = TrainConfig(batch_size=4, grad_accum=2, max_steps=2, learning_rate=1e-3, progress_bar=False,
                      save_minutes=None)
    cpu, gpu = _both(tiny_model_dirs["llama"])
    kw = dict(ids=ids, tasks=tasks, alpha=0.5, scores=scores, temperature=1.5)
    m_cpu = train_supervised(cpu, pairs, cfg, tmp_path / "cpu", **kw)
    m_gpu = train_supervised(gpu, pairs, cfg, tmp_path / "gpu", **kw)
    assert m_gpu["loss_last"] == pytest.approx(m_cpu["loss_last"], rel=1e-3)
    for p, q in zip(cpu.model.parameters(), gpu.model.parameters()):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-3, atol=1e-4)


def test_bf16_attribution_on_the_gpu_agrees_with_fp32(tiny_model_dirs):
    _, gpu = _both(tiny_model_dirs["llama"])
    fp32 = attribute(gpu, PROMPTS, ANSWERS, AttributionConfig(method="input_x_gradient", bf16=False))
    bf16 = attribute(gpu, PROMPTS, ANSWERS, AttributionConfig(method="input_x_gradient", bf16=True))
    for a, b in zip(fp32, bf16):
        assert torch.corrcoef(torch.tensor([a.scores, b.scores]))[0, 1] > 0.95


@pytest.mark.parametrize("lora", [False, True])
def test_training_on_the_gpu_follows_the_cpu_run(tiny_model_dirs, tmp_path, lora):
    cpu, gpu = _both(tiny_model_dirs["llama"])
    cfg = TrainConfig(lora=lora, lora_r=4, **QUICK)
    m_cpu = train_supervised(cpu, PAIRS, cfg, tmp_path / "cpu")
    m_gpu = train_supervised(gpu, PAIRS, cfg, tmp_path / "gpu")
    assert m_gpu["device"].startswith("cuda") and m_cpu["device"] == "cpu"
    assert m_gpu["global_step"] == m_cpu["global_step"] == 6
    assert m_gpu["loss_last"] < m_gpu["loss_first"]
    assert m_gpu["loss_last"] == pytest.approx(m_cpu["loss_last"], rel=1e-3)
    if lora:  # the adapters' random init comes from each device's own generator: no equal weights
        return
    for p, q in zip(cpu.model.parameters(), gpu.model.parameters()):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-3, atol=1e-4)


def test_every_mode_runs_end_to_end_on_the_gpu(tiny_model_dirs, tmp_path):
    # teacher answers, attribution, every student mode (logit KD against the teacher, best-checkpoint
    # early stopping on validation) and evaluation, all with `device: auto`
    import json

    from conftest import write_planets

    from saliency_distill.cli.main import main
    from saliency_distill.student.modes import MODES

    modes = [m for m in MODES if m not in ("human-rationale", "llm-rationale")]  # the file task has neither
    data = write_planets(tmp_path)
    run = tmp_path / "run"
    args = [f"run_dir={run}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={tiny_model_dirs['qwen2']}",
            f"student.model.name={tiny_model_dirs['llama']}", "teacher.finetune=false",
            f"student.modes=[{','.join(modes)}]", "student.logit_kd=0.5",
            "student.early_stopping.enabled=true", "student.train.max_steps=4", "student.train.progress_bar=false",
            "student.eval.max_new_tokens=4", "progress=false", "rationale.k=3"]
    assert main(["-q", "run", *args]) == 0
    for mode in modes:
        metrics = json.loads((run / "students" / mode / "seed0" / "train_metrics.json").read_text())
        assert metrics["device"].startswith("cuda"), mode
        assert json.loads((run / "students" / mode / "seed0" / "result.json").read_text())["n"] > 0
