"""The multi-task loss: target weights over an optimizer step, and the weighted token loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saliency_distill.training.losses import (
    EXPLAIN,
    PREDICT,
    option_kl,
    sequence_logprobs,
    target_nll,
    target_weights,
    vocab_kl,
    weighted_loss,
)

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


def test_option_kl_matches_kl_div_per_example_at_any_temperature():
    torch.manual_seed(0)
    sizes = [3, 5, 2]  # options per example
    groups = torch.tensor([g for g, n in enumerate(sizes) for _ in range(n)])
    student = torch.randn(len(groups), requires_grad=True)
    teacher = torch.randn(len(groups)) * 3
    weights = torch.tensor([0.5, 0.25, 0.25])
    for temperature in (1.0, 2.0, 0.5):
        got = option_kl(student, groups, teacher, weights, temperature)
        want = torch.zeros(())
        for g in range(len(sizes)):
            chosen = groups == g
            log_q = F.log_softmax(student[chosen] / temperature, dim=-1)
            p = F.softmax(teacher[chosen] / temperature, dim=-1)
            want = want + weights[g] * F.kl_div(log_q, p, reduction="sum") * temperature**2
        torch.testing.assert_close(got, want)
    got.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_option_kl_is_zero_when_the_student_agrees_and_ignores_score_offsets():
    groups = torch.tensor([0, 0, 0, 1, 1])
    teacher = torch.tensor([-1.0, -2.0, -0.5, -3.0, -0.1])
    # per-example constant offsets do not change a distribution over options
    student = teacher + torch.tensor([4.0, 4.0, 4.0, -7.0, -7.0])
    loss = option_kl(student, groups, teacher, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(loss, torch.tensor(0.0), atol=1e-6, rtol=0)
    assert option_kl(torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0)) == 0


def test_vocab_kl_matches_kl_div_batchmean_and_needs_one_vocabulary():
    torch.manual_seed(1)
    student = torch.randn(6, 11, requires_grad=True)
    teacher = torch.randn(6, 11)
    weights = torch.full((6,), 1 / 6)
    for temperature in (1.0, 3.0):
        want = F.kl_div(F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
                        reduction="batchmean", log_target=True) * temperature**2
        torch.testing.assert_close(vocab_kl(student, teacher, weights, temperature), want)
    torch.testing.assert_close(vocab_kl(teacher, teacher, weights), torch.tensor(0.0), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="one vocabulary"):
        vocab_kl(student, torch.randn(6, 12), weights)


def test_sequence_logprobs_sum_token_logprobs_per_sequence():
    torch.manual_seed(2)
    logits = torch.randn(5, 7)
    ids = torch.tensor([1, 2, 3, 4, 5])
    seqs = torch.tensor([0, 0, 2, 2, 2])
    token = F.log_softmax(logits, -1).gather(1, ids[:, None])[:, 0]
    want = torch.stack([token[:2].sum(), torch.tensor(0.0), token[2:].sum()])
    torch.testing.assert_close(sequence_logprobs(logits, ids, seqs, 3), want)
