"""The multi-task loss: target weights over an optimizer step, and the weighted token loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saliency_distill.training.losses import EXPLAIN, PREDICT, target_nll, target_weights, weighted_loss

# Two micro-batches of one optimizer step: task and sequence of every target token.
TASKS = [torch.tensor([PREDICT, PREDICT, EXPLAIN, EXPLAIN, EXPLAIN, PREDICT]), torch.tensor([EXPLAIN, PREDICT, PREDICT])]
SEQS = [torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 1, 1])]


def _per_task(weights, task):
    return sum(float(w[t == task].sum()) for w, t in zip(weights, TASKS))


@pytest.mark.parametrize("average", ["token", "sequence"])
@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.9])
def test_each_task_gets_its_share_of_the_step(alpha, average):
    weights = target_weights(TASKS, SEQS, alpha, average)
    assert [w.shape for w in weights] == [t.shape for t in TASKS]
    assert _per_task(weights, PREDICT) == pytest.approx(alpha)
    assert _per_task(weights, EXPLAIN) == pytest.approx(1 - alpha)


def test_token_average_weighs_every_token_of_a_task_alike():
    weights = torch.cat(target_weights(TASKS, SEQS, 0.5, "token"))
    tasks = torch.cat(TASKS)
    assert torch.allclose(weights[tasks == PREDICT], torch.full((5,), 0.5 / 5))  # 5 predict tokens in the step
    assert torch.allclose(weights[tasks == EXPLAIN], torch.full((4,), 0.5 / 4))


def test_sequence_average_weighs_every_sequence_of_a_task_alike():
    # predict sequences: (batch 0, seq 0) 2 tokens, (0, 2) 1 token, (1, 1) 2 tokens: 3 sequences
    w0, w1 = target_weights(TASKS, SEQS, 0.5, "sequence")
    share = 0.5 / 3
    assert w0[0] == pytest.approx(share / 2) and w0[5] == pytest.approx(share) and w1[1] == pytest.approx(share / 2)
    assert w0[2] == pytest.approx(0.5 / 2 / 3) and w1[0] == pytest.approx(0.5 / 2)  # 2 explain sequences


def test_one_task_is_plain_fine_tuning_and_alpha_one_ignores_explanations():
    predict_only = [torch.full_like(t, PREDICT) for t in TASKS]
    for w in target_weights(predict_only, SEQS, 0.3, "token"):
        assert torch.allclose(w, torch.full(w.shape, 1 / 9))
    weights = target_weights(TASKS, SEQS, 1.0, "token")
    tasks = torch.cat(TASKS)
    assert torch.cat(weights)[tasks == EXPLAIN].abs().sum() == 0
    assert torch.allclose(torch.cat(weights)[tasks == PREDICT], torch.full((5,), 1 / 5))


def test_weighted_loss_is_the_weighted_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(6, 11, generator=g), torch.randint(0, 11, (6,), generator=g)
    w = torch.full((6,), 1 / 6)
    torch.testing.assert_close(weighted_loss(logits, ids, w), F.cross_entropy(logits, ids), rtol=1e-6, atol=1e-6)
    assert target_nll(logits.bfloat16(), ids).dtype == torch.float32


def test_no_targets_is_zero_and_differentiable():
    logits = torch.randn(0, 11, requires_grad=True)
    loss = weighted_loss(logits, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_unknown_average_is_an_error():
    with pytest.raises(ValueError, match="average"):
        target_weights(TASKS, SEQS, 0.5, "example")


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_bad_alpha(alpha):
    from saliency_distill.errors import ConfigError
    from saliency_distill.student.stage import StudentConfig

    with pytest.raises(ConfigError, match="student.alpha"):
        StudentConfig(alpha=alpha)


@pytest.mark.parametrize("key,value", [("format", "infix"), ("loss_average", "example"), ("predict_tag", " ")])
def test_bad_student_format_keys(key, value):
    from saliency_distill.errors import ConfigError
    from saliency_distill.student.stage import StudentConfig

    with pytest.raises(ConfigError, match=f"student.{key}"):
        StudentConfig(**{key: value})


def test_student_train_seed_is_not_a_silent_key():
    from saliency_distill.errors import ConfigError
    from saliency_distill.student.stage import StudentConfig
    from saliency_distill.training import TrainConfig

    with pytest.raises(ConfigError, match="student.train.seed.*student.seeds"):
        StudentConfig(train=TrainConfig(seed=3))
