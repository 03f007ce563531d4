from __future__ import annotations

import torch

from saliency_distill.models import load_model
from saliency_distill.models.tokens import answer_ids
from saliency_distill.teacher import score_choices, sequence_logprobs


def _manual_causal(lm, prompt, answer):
    tok = lm.tokenizer
    p = tok(prompt)["input_ids"]
    a = tok(" " + answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=ids).logits[0], -1)
    return sum(logp[len(p) - 1 + j, a[j]].item() for j in range(len(a))), len(a)


def test_batched_causal_scores_match_one_at_a_time(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    prompts = ["Question: Where is the plate?\nAnswer:", "Premise: Two women hug.\nAnswer:", "Q: 84 / 2?\nA:"]
    answers = ["cupboard", "entailment neutral", "( 84.0 / 2.0 )"]
    sums, lens = sequence_logprobs(lm, prompts, answers, batch_size=2)
    for s, n, p, a in zip(sums, lens, prompts, answers):
        ms, mn = _manual_causal(lm, p, a)
        assert n == mn
        assert abs(s - ms) < 1e-4
        assert s < 0


def test_seq2seq_scores_match_loss(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["t5"]))
    prompts = ["Premise: Two women hug.", "Question: Where is the plate? Answer Choices: (a) cupboard"]
    answers = ["entailment", "cupboard"]
    sums, lens = sequence_logprobs(lm, prompts, answers, batch_size=2)
    for s, n, p, a in zip(sums, lens, prompts, answers):
        enc = lm.tokenizer(p, return_tensors="pt")
        labels = torch.tensor([lm.tokenizer(a, add_special_tokens=False)["input_ids"] + [lm.tokenizer.eos_token_id]])
        with torch.no_grad():
            loss = lm.model(**enc, labels=labels).loss.item()
        assert n == labels.shape[1]
        assert abs(-s / n - loss) < 1e-4


def test_score_choices_shapes_and_best(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["qwen2"]))
    scores = score_choices(lm, ["Q: a?\nA:", "Q: b?\nA:"], [["x", "y", "zz"], ["entailment", "neutral"]])
    assert [len(s) for s in scores.sums] == [3, 2]
    best = scores.best()
    assert best[0] == max(range(3), key=scores.sums[0].__getitem__)
    mean = [s / n for s, n in zip(scores.sums[1], scores.lengths[1])]
    assert scores.best(normalise=True)[1] == max(range(2), key=mean.__getitem__)


def test_shared_prefix_choice_scores_equal_pairwise_scores(tiny_model_dirs):
    # Prompts of different lengths, choices of different counts and token lengths.
    prompts = ["Question: Where is the plate?\nAnswer Choices:\n(a) cupboard\n(b) table\nAnswer:",
               "Q: 2 + 2?\nA:", "Premise: Two women hug.\nHypothesis: Women embrace.\nAnswer:"]
    choices = [["cupboard", "table", "the river bank"], ["4", "five"], ["entailment", "neutral", "contradiction"]]
    for name in ("llama", "qwen2"):
        lm = load_model(str(tiny_model_dirs[name]))
        shared = score_choices(lm, prompts, choices, batch_size=3)
        single = score_choices(lm, prompts[1:2], choices[1:2], batch_size=1)
        for i, (p, cs) in enumerate(zip(prompts, choices)):
            sums, lens = sequence_logprobs(lm, [p] * len(cs), cs)
            assert shared.lengths[i] == lens
            torch.testing.assert_close(torch.tensor(shared.sums[i]), torch.tensor(sums), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(torch.tensor(single.sums[0]), torch.tensor(shared.sums[1]), rtol=1e-4, atol=1e-4)


def test_shared_demonstrations_give_the_same_choice_scores(tiny_model_dirs):
    demos = ("Answer each question with one word.\n\nQuestion: Where do you keep milk cold?\nAnswer: fridge\n\n"
             "Question: What do you write with?\nAnswer: pen\n\nQuestion: ")
    prompts = [demos + q + "\nAnswer:" for q in ("Where would you put a plate?", "Who hugs?", "2 + 2?")]
    choices = [["cupboard", "table", "the river bank"], ["women", "men"], ["4", "five", "six"]]
    for name in ("llama", "qwen2"):
        lm = load_model(str(tiny_model_dirs[name]))
        shared = score_choices(lm, prompts, choices, batch_size=3)
        single = [score_choices(lm, [p], [c], batch_size=1) for p, c in zip(prompts, choices)]
        assert shared.lengths == [s.lengths[0] for s in single]
        for got, want in zip(shared.sums, [s.sums[0] for s in single]):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-5)


def test_demonstrations_are_read_once_per_call_and_one_token_answers_need_no_second_pass(tiny_model_dirs):
    demos = ("Answer each question with one word.\n\nQuestion: Where do you keep milk cold?\nAnswer: fridge\n\n"
             "Question: What do you write with?\nAnswer: pen\n\nQuestion: ")
    questions = ("Where would you put a plate?", "How do birds fly?", "2 + 2?", "What is red?", "Can dogs bark?")
    prompts = [demos + q + "\nAnswer:" for q in questions]
    lm = load_model(str(tiny_model_dirs["qwen2"]))
    words = "the a is fridge pen plate hugs red who what where answer question".split()
    one_token = [w for w in words if len(answer_ids(lm, w)) == 1][:2]
    assert len(one_token) == 2
    for options in (one_token, ["cupboard", "the river bank"]):
        calls: list[int] = []
        handle = lm.model.register_forward_pre_hook(
            lambda m, a, kw, calls=calls: calls.append(kw["input_ids"].shape[0]), with_kwargs=True)
        try:
            shared = score_choices(lm, prompts, [options] * len(prompts), batch_size=2)
        finally:
            handle.remove()
        # batches of 2, 2, 1: the demonstrations once (1 row), then each batch (the last one too), a second pass only
        # for answers of several tokens
        several = max(len(answer_ids(lm, o)) for o in options) > 1
        assert calls == [1, 2, *([4] if several else []), 2, *([4] if several else []), 1, *([2] if several else [])]
        for p, got in zip(prompts, shared.sums):
            want, _ = sequence_logprobs(lm, [p] * len(options), options)
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-4)


def test_prompts_are_batched_by_length_and_scores_come_back_in_input_order(tiny_model_dirs, monkeypatch):
    import saliency_distill.teacher.scoring as scoring

    lm = load_model(str(tiny_model_dirs["qwen2"]))
    prompts = ["Q: 2 + 2?\nA:", "Question: Where would you put a plate after dinner, washed and dry?\nAnswer:",
               "Q: red?\nA:", "Question: Which of these animals can fly over the river at night?\nAnswer:"]
    choices = [["4", "five"], ["cupboard", "table"], ["yes", "no"], ["bird", "dog"]]
    batches: list[list[int]] = []
    real = scoring._score_shared_prefix

    def spy(lm_, prompt_ids, *args):
        batches.append(sorted(len(p) for p in prompt_ids))
        return real(lm_, prompt_ids, *args)

    monkeypatch.setattr(scoring, "_score_shared_prefix", spy)
    together = score_choices(lm, prompts, choices, batch_size=2)
    lengths = sorted(len(lm.tokenizer(p)["input_ids"]) for p in prompts)
    assert batches == [lengths[2:], lengths[:2]]  # the two long prompts together, then the two short ones
    for i, (p, cs) in enumerate(zip(prompts, choices)):
        alone = score_choices(lm, [p], [cs], batch_size=1)
        torch.testing.assert_close(torch.tensor(together.sums[i]), torch.tensor(alone.sums[0]), rtol=1e-4, atol=1e-4)
        assert together.lengths[i] == alone.lengths[0]


def test_tokens_every_choice_starts_with_are_read_with_the_prompt(tiny_model_dirs):
    from saliency_distill.teacher.scoring import _common_start

    prompts = ["Premise: Two women hug.\nHypothesis: Women embrace.\nAnswer:", "Q: 2 + 2?\nA:", "Q: red?\nA:"]
    letters = ["(a)", "(b)", "(c)"]
    lm = load_model(str(tiny_model_dirs["qwen2"]))
    ids = [answer_ids(lm, c) for c in letters]
    lead = _common_start(ids)
    assert lead and all(a[:len(lead)] == lead and len(a) > len(lead) for a in ids)
    assert _common_start([[5, 6], [5, 6, 7]]) == [5] and _common_start([[5], [6]]) == [] == _common_start([[], [5]])
    rows: list[tuple[int, int]] = []
    handle = lm.model.register_forward_pre_hook(
        lambda m, a, kw: rows.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    try:
        got = score_choices(lm, prompts, [letters] * 3, batch_size=3)
    finally:
        handle.remove()
    longest = max(len(lm.tokenizer(p)["input_ids"]) for p in prompts)
    rest = max(map(len, ids)) - len(lead)
    # one pass over the prompts and the shared tokens, then the choices' own tokens but the last
    assert rows == [(3, longest + len(lead)), *([(9, rest - 1)] if rest > 1 else [])]
    for p, sums, lens in zip(prompts, got.sums, got.lengths):
        want, n = sequence_logprobs(lm, [p] * 3, letters)
        assert lens == n
        torch.testing.assert_close(torch.tensor(sums), torch.tensor(want), rtol=1e-4, atol=1e-4)
