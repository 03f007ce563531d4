from __future__ import annotations

import dataclasses

import pytest
import torch

from saliency_distill.attribution import AttributionConfig, attribute, list_methods, quadrature
from saliency_distill.attribution.inputs import answer_logprob, embed, encode, frozen
from saliency_distill.errors import ConfigError, DataError
from saliency_distill.models import LoadedModel, load_model
from saliency_distill.teacher import sequence_logprobs

PROMPTS = [
    "Question: Where would you put a plate after washing it?\nAnswer Choices:\n(a) cupboard\n(b) table\nAnswer:",
    "Premise: Two women are embracing.\nHypothesis: Two women hug.\nAnswer:",
    "Luke scored 84 points after playing 2 rounds.\nEquation:",
]
ANSWERS = ["cupboard", "entailment", "( 84.0 / 2.0 )"]


@pytest.fixture(scope="module")
def llama(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["llama"]))


@pytest.fixture(scope="module")
def t5(tiny_model_dirs):
    return load_model(str(tiny_model_dirs["t5"]))


# ---- a toy model whose answer depends on one known input token -------------------------------

class _Out:
    def __init__(self, h):
        self.last_hidden_state = h


class ToyBody(torch.nn.Module):
    """hidden_t = sum_{s<=t} w_s * e_s with one position weighted 50x the others."""

    def __init__(self, key_position: int, length: int = 64):
        super().__init__()
        w = torch.full((length,), 0.02)
        w[key_position] = 1.0
        self.register_buffer("w", w)

    def forward(self, inputs_embeds, attention_mask, output_attentions=False):
        weighted = inputs_embeds * self.w[: inputs_embeds.size(1)].view(1, -1, 1)
        return _Out(torch.cumsum(weighted * attention_mask.unsqueeze(-1), dim=1))


class ToyLM(torch.nn.Module):
    def __init__(self, vocab: int, key_position: int):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, 16)
        self.body = ToyBody(key_position)
        self.config = type("C", (), {"max_position_embeddings": 64})()

    @property
    def base_model(self):
        return self.body

    def get_input_embeddings(self):
        return self.emb

    def get_output_embeddings(self):
        return lambda h: h @ self.emb.weight.T


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_known_token_ranks_first(tokenizer, method):
    prompt = "the quick brown fox jumps over the lazy dog"
    ids = tokenizer(prompt)["input_ids"]
    key = 3
    lm = LoadedModel(ToyLM(len(tokenizer), key), tokenizer, "causal", "toy", "local", "-")
    answer = tokenizer.decode(ids[key]).strip()  # the answer is the key token itself
    [ts] = attribute(lm, [prompt], [answer], AttributionConfig(method=method, steps=32))
    ranked = sorted(range(len(ts.scores)), key=lambda i: -abs(ts.scores[i]))
    assert ranked[0] == key, (ranked, ts.scores)


# ---- invariants on real tiny models ----------------------------------------------------------

@pytest.mark.parametrize("method", list_methods())
def test_batched_equals_one_at_a_time(llama, method):
    cfg = AttributionConfig(method=method, batch_size=3, steps=4, bf16=False)
    batched = attribute(llama, PROMPTS, ANSWERS, cfg)
    single = [attribute(llama, [p], [a], AttributionConfig(method=method, batch_size=1, steps=4, bf16=False))[0]
              for p, a in zip(PROMPTS, ANSWERS)]
    for b, s in zip(batched, single):
        assert b.token_ids == s.token_ids and b.offsets == s.offsets
        torch.testing.assert_close(torch.tensor(b.scores), torch.tensor(s.scores), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", list_methods())
def test_seq2seq_scores_cover_encoder_input(t5, method):
    if method == "attention":
        pytest.skip("covered below")
    out = attribute(t5, PROMPTS[:2], ANSWERS[:2], AttributionConfig(method=method, steps=4))
    for ts, p in zip(out, PROMPTS):
        assert len(ts.scores) == len(t5.tokenizer(p)["input_ids"])
        assert any(s != 0 for s in ts.scores)


def test_logprob_is_the_teachers_scoring_quantity(llama, t5):
    for lm in (llama, t5):
        out = attribute(lm, PROMPTS, ANSWERS, AttributionConfig(method="saliency", bf16=False))
        sums, _ = sequence_logprobs(lm, PROMPTS, ANSWERS)
        torch.testing.assert_close(torch.tensor([o.logprob for o in out]), torch.tensor(sums), rtol=1e-4, atol=1e-4)


def test_integrated_gradients_completeness_on_toy_model(tokenizer):
    # A smooth model (no normalisation layer): 16 Gauss-Legendre points are already exact.
    prompt = "the quick brown fox jumps over the lazy dog"
    lm = LoadedModel(ToyLM(len(tokenizer), 3), tokenizer, "causal", "toy", "local", "-")
    [ts] = attribute(lm, [prompt], ["fox"], AttributionConfig(method="integrated_gradients", steps=16))
    delta = ts.logprob - ts.baseline_logprob
    assert abs(delta) > 0.1
    assert ts.completeness_gap < 1e-4


@pytest.mark.parametrize(
    ("baseline", "steps", "limit"),
    [
        # RMSNorm makes f(b + a(x - b)) change steeply near a = 0 from a zero baseline, so many
        # points are needed: with 128 the gap |sum - (f(x) - f(b))| / |f(x) - f(b)| is under 1%.
        ("zero", 128, 0.01),
        # A non-zero baseline never passes through RMSNorm's epsilon regime: 16 points suffice.
        ("mean", 16, 0.02),
    ],
)
def test_integrated_gradients_completeness_on_tiny_llama(llama, baseline, steps, limit):
    cfg = AttributionConfig(method="integrated_gradients", steps=steps, baseline=baseline)
    for ts in attribute(llama, PROMPTS, ANSWERS, cfg):
        delta = ts.logprob - ts.baseline_logprob
        assert abs(delta) > 1e-3
        assert ts.completeness_gap < limit, (sum(ts.scores), delta)


def test_gauss_legendre_beats_riemann_at_few_steps(llama):
    gaps = {}
    for rule in ("gauss_legendre", "riemann_trapezoid"):
        out = attribute(llama, PROMPTS, ANSWERS, AttributionConfig(method="integrated_gradients", steps=4, quadrature=rule))
        gaps[rule] = sum(ts.completeness_gap for ts in out)
    assert gaps["gauss_legendre"] < gaps["riemann_trapezoid"]


def test_quadrature_weights():
    for rule in ("gauss_legendre", "riemann_middle", "riemann_trapezoid"):
        a, w = quadrature(rule, 7)
        assert len(a) == 7 and abs(sum(w) - 1) < 1e-12 and all(0 <= x <= 1 for x in a)
    # Gauss-Legendre with 3 points integrates t^5 on [0, 1] exactly: 1/6.
    a, w = quadrature("gauss_legendre", 3)
    assert abs(sum(wi * ai**5 for ai, wi in zip(a, w)) - 1 / 6) < 1e-12


def test_path_power_substitution_keeps_the_integral():
    # a = u^2 with 3 Gauss-Legendre points: the integrand of a^2 becomes 2u^5, still exact.
    a, w = quadrature("gauss_legendre", 3, power=2.0)
    assert abs(sum(w) - 1) < 1e-12 and all(0 <= x <= 1 for x in a)
    assert abs(sum(wi * ai**2 for ai, wi in zip(a, w)) - 1 / 3) < 1e-12
    # The points crowd towards the baseline: the smallest is the square of the plain rule's.
    plain, _ = quadrature("gauss_legendre", 3)
    assert min(a) == pytest.approx(min(plain) ** 2)
    with pytest.raises(ConfigError, match="path_power"):
        AttributionConfig(method="integrated_gradients", path_power=0.5)


def test_path_power_closes_the_completeness_gap_from_a_zero_baseline(llama):
    # From a zero baseline the integrand is steep near a = 0 (RMSNorm's epsilon regime):
    # crowding the 16 points there (a = u^3) shrinks the summed gap several times over.
    gaps = {}
    for power in (1.0, 3.0):
        cfg = AttributionConfig(method="integrated_gradients", steps=16, path_power=power)
        gaps[power] = sum(ts.completeness_gap for ts in attribute(llama, PROMPTS, ANSWERS, cfg))
    assert gaps[3.0] < gaps[1.0] / 4, gaps


def test_input_x_gradient_matches_finite_differences(llama):
    [ts] = attribute(llama, PROMPTS[:1], ANSWERS[:1], AttributionConfig(method="input_x_gradient", bf16=False))
    batch = encode(llama, ["0"], PROMPTS[:1], ANSWERS[:1])
    h = 1e-2  # RMSNorm computes in float32 even in a float64 model: a larger step beats its noise
    with frozen(llama.model), torch.no_grad():
        x = embed(llama, batch).double()
        llama.model.double()
        try:
            for t in (1, 5, len(ts.scores) - 1):
                up, down = x.clone(), x.clone()
                up[0, t] *= 1 + h
                down[0, t] *= 1 - h
                fd = (answer_logprob(llama, batch, up)[0] - answer_logprob(llama, batch, down)[0]) / (2 * h)
                assert abs(fd.item() - ts.scores[t]) <= 0.02 * abs(ts.scores[t]) + 1e-6, (t, fd.item(), ts.scores[t])
        finally:
            llama.model.float()


def test_attention_scores_are_a_distribution_over_positions(llama, t5):
    for lm, rollout in ((llama, False), (llama, True), (t5, False)):
        out = attribute(lm, PROMPTS, ANSWERS, AttributionConfig(method="attention", rollout=rollout))
        for ts in out:
            assert all(s >= 0 for s in ts.scores)
            assert sum(ts.scores) <= 1.0 + 1e-5
    # The model is switched back to its own attention implementation afterwards.
    assert llama.model.config._attn_implementation == "sdpa"


def test_bf16_input_x_gradient_agrees_with_fp32(llama):
    fp32 = attribute(llama, PROMPTS, ANSWERS, AttributionConfig(method="input_x_gradient", bf16=False))
    bf16 = attribute(llama, PROMPTS, ANSWERS, AttributionConfig(method="input_x_gradient", bf16=True))
    for a, b in zip(fp32, bf16):
        r = torch.corrcoef(torch.stack([torch.tensor(a.scores), torch.tensor(b.scores)]))[0, 1]
        assert r > 0.95


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_default_follows_the_method_and_hardware(fast, monkeypatch):
    from saliency_distill.models import loading

    monkeypatch.setattr(loading, "_cpu_native", lambda dtype: fast)
    assert AttributionConfig(method="input_x_gradient").use_bf16("cpu") is fast
    assert AttributionConfig(method="attention").use_bf16("cpu") is fast
    assert AttributionConfig(method="integrated_gradients").use_bf16("cpu") is False
    assert AttributionConfig(method="saliency", bf16=False).use_bf16("cpu") is False
    assert AttributionConfig(method="saliency").use_bf16("mps") is False  # only where it was measured


def test_parameters_stay_untouched(llama):
    flags = [p.requires_grad for p in llama.model.parameters()]
    attribute(llama, PROMPTS[:1], ANSWERS[:1], AttributionConfig(method="saliency"))
    assert [p.requires_grad for p in llama.model.parameters()] == flags
    assert all(p.grad is None for p in llama.model.parameters())


def test_bad_inputs(llama):
    with pytest.raises(ConfigError, match="unknown method 'gradcam'"):
        AttributionConfig(method="gradcam")
    with pytest.raises(ConfigError, match="bf16"):
        AttributionConfig(method="integrated_gradients", bf16=True)
    with pytest.raises(DataError, match="example long-1: prompt and answer are \\d+ tokens, longer than the 8-token limit"):
        attribute(llama, PROMPTS[:1], ANSWERS[:1], AttributionConfig(max_length=8), ids=["long-1"])


def test_the_config_accepts_exactly_the_registered_methods():
    """The names live apart from the registry (so that the config need not import it): they must
    still be the registry's methods, in its order."""
    from saliency_distill.attribution.registry import _methods

    assert list(_methods()) == list_methods()
    for method in list_methods():
        assert AttributionConfig(method=method).method == method


def test_content_scope_keeps_template_tokens_as_context(llama):
    # Only "plate" and "cupboard" move to the baseline: every other token scores exactly 0,
    # and completeness holds against the baseline that moved only those words.
    prompt = PROMPTS[0]
    spans = [(prompt.index("plate"), prompt.index("plate") + 5), (prompt.index("cupboard"), prompt.index("cupboard") + 8)]
    cfg = AttributionConfig(method="integrated_gradients", steps=64, baseline="mean")
    [ts] = attribute(llama, [prompt], ANSWERS[:1], cfg, spans=[spans])
    inside = [any(s < e2 and e > s2 for s2, e2 in spans) for s, e in ts.offsets]
    assert any(inside) and not all(inside)
    assert all(score == 0.0 for score, keep in zip(ts.scores, inside) if not keep)
    assert any(score != 0.0 for score, keep in zip(ts.scores, inside) if keep)
    assert ts.completeness_gap < 0.02
    [whole] = attribute(llama, [prompt], ANSWERS[:1], dataclasses.replace(cfg, scope="prompt"), spans=[spans])
    assert all(score != 0.0 for score in whole.scores)


# ---- few-shot prompts: the shared demonstrations are read once ---------------------------------

DEMOS = ("Answer each question with one word.\n\nQuestion: Where do you keep milk cold?\nAnswer: fridge\n\n"
         "Question: What do you write with?\nAnswer: pen\n\nQuestion: ")
SHOT_QUESTIONS = ["Where would you put a plate after washing it?", "Where do two women hug?",
                  "Where would you put a plate of cake?"]  # two share their first words: content, never prefix
SHOT_PROMPTS = [DEMOS + q + "\nAnswer:" for q in SHOT_QUESTIONS]
SHOT_SPANS = [[(len(DEMOS), len(DEMOS) + len(q))] for q in SHOT_QUESTIONS]


def test_shared_prefix_stops_before_the_first_content_token(llama):
    with_spans = encode(llama, ["a", "b", "c"], SHOT_PROMPTS, ["x"] * 3, spans=SHOT_SPANS, share_prefix=True)
    first_feature = min(int(m.nonzero()[0]) for m in with_spans.feature_mask)
    assert 16 <= with_spans.prefix <= first_feature
    no_spans = encode(llama, ["a", "c"], [SHOT_PROMPTS[0], SHOT_PROMPTS[2]], ["x"] * 2, share_prefix=True)
    assert no_spans.prefix > with_spans.prefix  # without features, "Where would you put a plate" is shared too
    assert encode(llama, ["a", "b"], SHOT_PROMPTS[:2], ["x"] * 2).prefix == 0  # off unless asked


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients", "attention"])
def test_shared_demonstrations_give_the_scores_of_one_at_a_time(llama, method):
    cfg = AttributionConfig(method=method, batch_size=3, steps=4, bf16=False, scope="content")
    answers = ["cupboard", "park", "table"]
    batched = attribute(llama, SHOT_PROMPTS, answers, cfg, spans=SHOT_SPANS)
    single = [attribute(llama, [p], [a], dataclasses.replace(cfg, batch_size=1), spans=[s])[0]
              for p, a, s in zip(SHOT_PROMPTS, answers, SHOT_SPANS)]
    for b, s, spans in zip(batched, single, SHOT_SPANS):
        inside = [any(ts < e and te > s_ for s_, e in spans) for ts, te in b.offsets]
        assert b.token_ids == s.token_ids and abs(b.logprob - s.logprob) < 1e-4
        content = torch.tensor([x for x, keep in zip(b.scores, inside) if keep])
        torch.testing.assert_close(content, torch.tensor([x for x, keep in zip(s.scores, inside) if keep]),
                                   rtol=1e-4, atol=1e-6)
        assert content.abs().sum() > 0
        if method in ("saliency", "input_x_gradient"):  # the demonstrations were read once: no scores there
            assert b.scores[0] == 0.0 and s.scores[0] != 0.0


def test_shared_demonstrations_give_the_same_sequence_scores(llama):
    answers = ["cupboard", "park", "the kitchen table"]
    batched, lengths = sequence_logprobs(llama, SHOT_PROMPTS, answers, batch_size=3)
    single = [sequence_logprobs(llama, [p], [a], batch_size=1) for p, a in zip(SHOT_PROMPTS, answers)]
    assert lengths == [n for _, [n] in single]
    torch.testing.assert_close(torch.tensor(batched), torch.tensor([s for [s], _ in single]), rtol=1e-5, atol=1e-5)


# ---- contrastive attribution -----------------------------------------------------------------

def test_contrast_scores_are_the_answer_scores_minus_the_rival_scores(llama):
    from saliency_distill.attribution import iter_contrast

    cfg = AttributionConfig(method="input_x_gradient", bf16=False)
    rivals = ["planet 9", "neutral", "( 2.0 / 84.0 )", "decreases", "dog"][: len(PROMPTS)]
    both = list(iter_contrast(llama, PROMPTS, ANSWERS, rivals, cfg))
    a, b = attribute(llama, PROMPTS, ANSWERS, cfg), attribute(llama, PROMPTS, rivals, cfg)
    for c, x, y in zip(both, a, b):
        assert c.token_ids == x.token_ids and c.answer == x.answer
        assert c.scores == pytest.approx([s - t for s, t in zip(x.scores, y.scores)], abs=1e-6)
        assert c.logprob == pytest.approx(x.logprob - y.logprob)


def test_contrast_needs_a_method_linear_in_its_objective():
    from saliency_distill.errors import ConfigError

    with pytest.raises(ConfigError, match="attribution.contrast"):
        AttributionConfig(method="saliency", contrast=True)
    AttributionConfig(method="integrated_gradients", contrast=True)


def test_contrast_picks_the_word_that_separates_the_answer_from_its_rival(llama, tmp_path, monkeypatch):
    """A scripted method: "quick" raises every option alike, "brown" only option (a). The plain
    rationale is the word that makes any answer likely; the contrastive one, the separating word."""
    import json

    from saliency_distill.attribution import registry
    from saliency_distill.attribution.output import MethodOutput
    from saliency_distill.data import Example, TaskConfig, get_task
    from saliency_distill.rationale import RationaleConfig, RationaleStore, attribute_split
    from saliency_distill.teacher.prompt import TeacherPrompter

    ex = Example("q", {"question": "the quick brown fox jumps over the lazy dog"}, "fox", ("fox", "dog", "cat"))
    prompter = TeacherPrompter(get_task("cqa"), TaskConfig(name="cqa", path="-"), "letter")
    text = prompter.render(ex).text
    spans = {w: (text.index(w), text.index(w) + len(w)) for w in ("quick", "brown")}

    def scripted(lm, batch, cfg):
        scores = torch.zeros(batch.input_ids.shape)
        for r in range(len(batch.ids)):
            option_a = lm.tokenizer.decode(batch.targets[r][batch.target_mask[r]]).strip() == "(a)"
            for t, (s, e) in enumerate(batch.offsets[r]):
                if s < spans["quick"][1] and e > spans["quick"][0]:
                    scores[r, t] = 5.0
                if s < spans["brown"][1] and e > spans["brown"][0]:
                    scores[r, t] = 2.0 if option_a else 0.0
        return MethodOutput(scores, torch.zeros(len(batch.ids)))

    monkeypatch.setattr(registry, "_methods", lambda: {"input_x_gradient": scripted})
    answers = {"q": {"answer": "fox", "target": "(a)", "correct": True, "logprobs": [-0.5, -1.2, -3.0]}}
    chosen = {}
    for contrast in (None, True):
        store = RationaleStore(tmp_path / f"{contrast}.jsonl", {"config_hash": str(contrast)})
        attribute_split(llama, prompter, [ex], answers, AttributionConfig(target="teacher", contrast=contrast),
                        RationaleConfig(k=1), store, progress=False)
        chosen[contrast] = json.loads((tmp_path / f"{contrast}.jsonl").read_text().splitlines()[1])["rationale"]
    assert chosen == {None: "quick", True: "brown"}


def test_the_rival_is_the_teachers_strongest_other_option():
    from saliency_distill.data import Example, TaskConfig, get_task
    from saliency_distill.errors import DataError
    from saliency_distill.rationale.stage import rival
    from saliency_distill.teacher.prompt import TeacherPrompter

    ex = Example("q", {"question": "which?"}, "fox", ("fox", "dog", "cat"))
    letters = TeacherPrompter(get_task("cqa"), TaskConfig(name="cqa", path="-"), "letter")
    texts = TeacherPrompter(get_task("cqa"), TaskConfig(name="cqa", path="-"), "text")
    answers = {"q": {"logprobs": [-0.5, -3.0, -1.2]}}
    assert rival(letters, ex, "(a)", answers) == "(c)" and rival(letters, ex, "(c)", answers) == "(a)"
    assert rival(texts, ex, "dog", answers) == "fox"
    with pytest.raises(DataError, match="attribution.contrast needs"):
        rival(letters, ex, "(a)", {"q": {"answer": "fox"}})
