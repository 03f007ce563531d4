"""Soft-label distillation: the student's distribution over a choice task's options is pulled
towards the teacher's (no shared vocabulary needed). The trainer's loss equals a reference built
from separate forward passes; gradient accumulation keeps it exact; the mode builds its pairs
from the teacher's option scores and says clearly what it lacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saliency_distill.data import Example, TaskConfig, get_task
from saliency_distill.errors import DataError
from saliency_distill.models import load_model
from saliency_distill.student.modes import MODES, build_pairs
from saliency_distill.training import TrainConfig, encode_pair, train_supervised
from saliency_distill.training.features import IGNORE_INDEX
from saliency_distill.training.losses import OPTION, PREDICT
from saliency_distill.training.packing import causal_batch
from saliency_distill.training.trainer import build_trainer

PROMPTS = ["Premise: Two women are embracing.\nHypothesis: Two women hug.\npredict:",
           "Premise: A man sleeps.\nHypothesis: A man runs a marathon.\npredict:"]
OPTIONS = ["entailment", "neutral", "contradiction"]
GOLD = ["entailment", "contradiction"]
TEACHER = [[-0.2, -2.0, -3.0], [-1.5, -1.2, -0.7]]  # the teacher's log p of each option


def _items(lm):
    items = []
    for prompt, gold, scores in zip(PROMPTS, GOLD, TEACHER):
        parts = [dict(encode_pair(lm, prompt, gold), task=[PREDICT])]
        parts += [dict(encode_pair(lm, prompt, o), task=[OPTION], teacher_logprob=[s]) for o, s in zip(OPTIONS, scores)]
        items.append({"input_ids": parts[0]["input_ids"], "parts": parts})
    return items


def _sequence_logprob(model, part):
    ids, labels = torch.tensor([part["input_ids"]]), torch.tensor(part["labels"])
    logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    keep = labels[1:] != IGNORE_INDEX
    return logp[keep].gather(1, labels[1:][keep][:, None]).sum()


def _reference(model, items, alpha, temperature):
    """alpha * token-mean NLL of the gold labels + (1 - alpha) * mean over examples of
    T^2 KL(teacher || student) over the options, each sequence run on its own."""
    nll, n, kls = 0.0, 0, []
    for item in items:
        predict = item["parts"][0]
        labels = torch.tensor([predict["labels"]])
        count = int((labels[0, 1:] != IGNORE_INDEX).sum())
        nll = nll + model(input_ids=torch.tensor([predict["input_ids"]]), labels=labels).loss * count
        n += count
        options = item["parts"][1:]
        student = torch.stack([_sequence_logprob(model, p) for p in options]) / temperature
        teacher = torch.tensor([p["teacher_logprob"][0] for p in options]) / temperature
        kls.append(F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), reduction="sum",
                            log_target=True) * temperature**2)
    return alpha * nll / n + (1 - alpha) * torch.stack(kls).mean()


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_trainer_loss_equals_separate_forward_passes(tiny_model_dirs, tmp_path, temperature):
    lm = load_model(str(tiny_model_dirs["llama"]))
    model = lm.model.float()
    items = _items(lm)
    cfg = TrainConfig(max_steps=1, progress_bar=False, save_minutes=None)
    trainer = build_trainer(lm, model, items, cfg, tmp_path, alpha=0.4, temperature=temperature)
    batch = causal_batch(items, lm.tokenizer.pad_token_id)
    assert batch["seq_item"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.isnan(batch["seq_teacher"][[0, 4]]).all() and batch["seq_teacher"][1].item() == pytest.approx(-0.2)
    with torch.no_grad():
        got = trainer.compute_loss(model, batch)
        want = _reference(model, items, 0.4, temperature)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # alpha = 1 leaves only the label loss: the KL term must not leak into it
    trainer.alpha = 1.0
    with torch.no_grad():
        torch.testing.assert_close(trainer.compute_loss(model, causal_batch(items, lm.tokenizer.pad_token_id)),
                                   _reference(model, items, 1.0, temperature), rtol=1e-5, atol=1e-6)


def test_soft_labels_with_gradient_accumulation_give_the_gradients_of_one_batch(tiny_model_dirs, tmp_path):
    from transformers import TrainerCallback

    class Keep(TrainerCallback):
        def __init__(self):
            self.grads = {}

        def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
            if not self.grads:
                self.grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    pairs, ids, tasks, scores = [], [], [], []
    for i in range(8):
        prompt = PROMPTS[i % 2].replace("Two", f"Two ({i})")
        pairs.append((prompt, GOLD[i % 2]))
        ids.append(f"e{i}")
        tasks.append(PREDICT)
        scores.append(None)
        options = OPTIONS[: 2 + i % 2]  # examples with two and with three options
        for option, score in zip(options, TEACHER[i % 2]):
            pairs.append((prompt, option))
            ids.append(f"e{i}")
            tasks.append(OPTION)
            scores.append(score + 0.1 * i)
    grads = []
    for name, extra in (("one", dict(batch_size=8)), ("two", dict(batch_size=4, grad_accum=2))):
        keep = Keep()
        cfg = TrainConfig(max_steps=1, learning_rate=1e-3, max_grad_norm=0.0, progress_bar=False,
                          save_minutes=None, **extra)
        train_supervised(load_model(str(tiny_model_dirs["llama"])), pairs, cfg, tmp_path / name, ids=ids,
                         tasks=tasks, alpha=0.3, extra_callbacks=[keep], scores=scores, temperature=1.5)
        grads.append(keep.grads)
    one, two = grads
    assert one.keys() == two.keys() and len(one) > 10
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


def _nli():
    examples = [Example(id=f"n{i}", fields={"premise": p, "hypothesis": h}, label=y, choices=tuple(OPTIONS))
                for i, (p, h, y) in enumerate([("Two women are embracing.", "Two women hug.", "entailment"),
                                                ("A man sleeps.", "A man runs.", "contradiction")])]
    return get_task("esnli"), TaskConfig(name="esnli"), examples


def test_soft_label_pairs_carry_the_teachers_option_scores():
    task, cfg, examples = _nli()
    answers = {ex.id: {"answer": ex.label, "logprobs": s} for ex, s in zip(examples, TEACHER)}
    pairs = build_pairs("soft-label", task, cfg, examples, teacher_answers=answers)
    assert MODES["soft-label"].needs_teacher and MODES["soft-label"].needs_answers and pairs.soft
    assert pairs.tasks == [PREDICT, OPTION, OPTION, OPTION] * 2
    assert pairs.targets[:4] == [examples[0].label, *OPTIONS]
    assert pairs.scores[:4] == [None, *TEACHER[0]]
    assert len(set(pairs.prompts[:4])) == 1  # every option follows the predict prompt
    with pytest.raises(DataError, match=f"example {examples[1].id}: no teacher answer"):
        build_pairs("soft-label", task, cfg, examples, teacher_answers={examples[0].id: answers[examples[0].id]})
    broken = {**answers, examples[1].id: {"answer": "neutral", "logprobs": [-1.0]}}
    with pytest.raises(DataError, match=f"example {examples[1].id}: the teacher's answer has no score per option"):
        build_pairs("soft-label", task, cfg, examples, teacher_answers=broken)


def test_soft_labels_need_a_choice_task():
    task = get_task("svamp")
    ex = Example(id="s1", fields={"input": "Luke has 3 apples and eats 1. How many are left?"}, label="( 3.0 - 1.0 )")
    with pytest.raises(DataError, match="needs a choice task"):
        build_pairs("soft-label", task, TaskConfig(name="svamp"), [ex], teacher_answers={"s1": {"answer": "2"}})


# ---- logit distillation over a shared vocabulary ---------------------------------------------


def test_logit_kd_adds_the_teachers_kl_at_every_target_token(tiny_model_dirs, tmp_path):
    student = load_model(str(tiny_model_dirs["llama"]))
    teacher = load_model(str(tiny_model_dirs["qwen2"])).model.float()  # same tokenizer, same vocabulary
    model = student.model.float()
    items = [{"input_ids": it["parts"][0]["input_ids"], "parts": it["parts"][:1]} for it in _items(student)]
    cfg = TrainConfig(max_steps=1, progress_bar=False, save_minutes=None)
    plain = build_trainer(student, model, items, cfg, tmp_path / "a")
    kd = build_trainer(student, model, items, cfg, tmp_path / "b", temperature=2.0, teacher=teacher, logit_kd=0.5)
    batch = causal_batch(items, student.tokenizer.pad_token_id)
    with torch.no_grad():
        base = plain.compute_loss(model, dict(batch))
        got = kd.compute_loss(model, dict(batch))
        # reference: each sequence on its own, full logits, torch's kl_div averaged over the target tokens
        s_logits, t_logits = [], []
        for item in items:
            part = item["parts"][0]
            ids, labels = torch.tensor([part["input_ids"]]), torch.tensor(part["labels"])
            keep = labels[1:] != IGNORE_INDEX
            s_logits.append(model(input_ids=ids).logits[0, :-1][keep])
            t_logits.append(teacher(input_ids=ids).logits[0, :-1][keep])
        s, t = torch.cat(s_logits) / 2.0, torch.cat(t_logits) / 2.0
        want = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), reduction="batchmean", log_target=True) * 4.0
    assert want > 0
    torch.testing.assert_close(got - base, 0.5 * want, rtol=1e-4, atol=1e-6)


def test_logit_kd_needs_one_vocabulary(tiny_model_dirs, tmp_path):
    from conftest import _tiny_causal

    from saliency_distill.errors import ConfigError
    from saliency_distill.models import ModelConfig
    from saliency_distill.student.stage import StudentConfig, _kd_teacher

    student = load_model(str(tiny_model_dirs["llama"]))
    other = tmp_path / "bigger-vocab"
    _tiny_causal("qwen2", len(student.tokenizer) + 8).save_pretrained(other)
    student.tokenizer.save_pretrained(other)
    cfg = StudentConfig(model=ModelConfig(name=str(tiny_model_dirs["llama"])), logit_kd=0.5)
    with pytest.raises(ConfigError, match="do not share a vocabulary"):
        _kd_teacher(student, ModelConfig(name=str(other)), cfg)
    assert _kd_teacher(student, ModelConfig(name=str(tiny_model_dirs["qwen2"])), cfg) is not None
    assert _kd_teacher(student, None, StudentConfig()) is None  # off by default
