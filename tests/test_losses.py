from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saliency_distill.models import load_model
from saliency_distill.training import encode_pair, pad_batch
from saliency_distill.training.losses import EXPLAIN, IGNORE_INDEX, PREDICT, multitask_loss, sequence_nll


def _batch(seed=0, b=4, t=7, v=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[:, :3] = IGNORE_INDEX  # prompt positions
    labels[1, 5:] = IGNORE_INDEX  # padding
    return logits, labels


def _seq_means(logits, labels):
    out = []
    for row in range(labels.size(0)):
        keep = labels[row] != IGNORE_INDEX
        out.append(F.cross_entropy(logits[row][keep], labels[row][keep]))
    return torch.stack(out)


def test_sequence_nll_matches_cross_entropy_per_sequence():
    logits, labels = _batch()
    nll, valid = sequence_nll(logits, labels, shift=False)
    torch.testing.assert_close(nll, _seq_means(logits, labels), rtol=1e-6, atol=1e-6)
    assert valid.all()


def test_alpha_weighting():
    logits, labels = _batch()
    tasks = torch.tensor([PREDICT, EXPLAIN, PREDICT, EXPLAIN])
    per_seq = _seq_means(logits, labels)
    l_pred, l_expl = per_seq[[0, 2]].mean(), per_seq[[1, 3]].mean()
    for alpha in (0.5, 0.8, 1.0):
        loss = multitask_loss(logits, labels, tasks, alpha, shift=False)
        torch.testing.assert_close(loss, alpha * l_pred + (1 - alpha) * l_expl, rtol=1e-6, atol=1e-6)


def test_single_task_batch_is_plain_fine_tuning():
    logits, labels = _batch()
    tasks = torch.full((4,), PREDICT)
    loss = multitask_loss(logits, labels, tasks, 0.3, shift=False)
    torch.testing.assert_close(loss, _seq_means(logits, labels).mean(), rtol=1e-6, atol=1e-6)


def test_everything_masked_is_zero_and_differentiable():
    logits, labels = _batch()
    logits.requires_grad_(True)
    labels[:] = IGNORE_INDEX
    loss = multitask_loss(logits, labels, torch.tensor([0, 1, 0, 1]), 0.5, shift=True)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() == 0


def test_causal_shift_and_label_only_masking_match_the_model_loss(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    feat = encode_pair(lm, "predict: Question: Where is the plate?\nAnswer:", "cupboard")
    n_prompt = len(lm.tokenizer("predict: Question: Where is the plate?\nAnswer:")["input_ids"])
    assert feat["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert all(x != IGNORE_INDEX for x in feat["labels"][n_prompt:])
    batch = pad_batch([feat], lm.tokenizer.pad_token_id)
    with torch.no_grad():
        out = lm.model(**batch)  # HF shifts internally and ignores -100
    ours = multitask_loss(out.logits, batch["labels"], torch.tensor([PREDICT]), 0.5, shift=True)
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-6)


def test_seq2seq_no_shift_matches_the_model_loss(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["t5"]))
    batch = pad_batch([encode_pair(lm, "explain: Premise: A dog runs.", "dog runs")], lm.tokenizer.pad_token_id)
    with torch.no_grad():
        out = lm.model(**batch)
    ours = multitask_loss(out.logits, batch["labels"], torch.tensor([EXPLAIN]), 0.5, shift=False)
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_bad_alpha(alpha):
    from saliency_distill.errors import ConfigError
    from saliency_distill.training.student import StudentConfig

    with pytest.raises(ConfigError, match="student.alpha"):
        StudentConfig(alpha=alpha)
