"""``attribute``: token scores for a list of (prompt, answer) pairs, batched."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from ..models import LoadedModel
from .config import AttributionConfig
from .inputs import encode, frozen
from .output import TokenScores
from .registry import get_method


def attribute(
    lm: LoadedModel,
    prompts: Sequence[str],
    answers: Sequence[str],
    cfg: AttributionConfig | None = None,
    ids: Sequence[str] | None = None,
    spans: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> list[TokenScores]:
    """Score every prompt token by its influence on log p(answer | prompt).

    ``spans``: per prompt, the character spans of its content (question, choices...). With
    ``cfg.scope == "content"`` integrated gradients move only those tokens to the baseline and
    keep the others (template words) as context, scoring them 0; other methods ignore spans.
    """
    return list(iter_attribute(lm, prompts, answers, cfg, ids, spans))


def iter_attribute(
    lm: LoadedModel,
    prompts: Sequence[str],
    answers: Sequence[str],
    cfg: AttributionConfig | None = None,
    ids: Sequence[str] | None = None,
    spans: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> Iterator[TokenScores]:
    """Like :func:`attribute`, yielding each batch's results as soon as they are computed."""
    cfg = cfg or AttributionConfig()
    ids = list(ids) if ids is not None else [str(i) for i in range(len(prompts))]
    method = get_method(cfg.method)
    # A prefix read once gets no scores: only for methods that score the features alone (attention
    # reads every position's weights; integrated gradients over the whole prompt moves the prefix too).
    share = spans is not None and (cfg.method in ("saliency", "input_x_gradient")
                                   or (cfg.method == "integrated_gradients" and cfg.scope == "content"))
    with frozen(lm.model):
        for start in range(0, len(prompts), cfg.batch_size):
            sl = slice(start, start + cfg.batch_size)
            batch = encode(lm, ids[sl], prompts[sl], answers[sl], cfg.max_length,
                           spans[sl] if spans is not None else None, share_prefix=share)
            out = method(lm, batch, cfg)
            scores = out.scores.detach().float().cpu()
            for r, ex_id in enumerate(batch.ids):
                p = batch.prompt_lengths[r]
                yield TokenScores(
                    id=ex_id,
                    prompt=prompts[start + r],
                    answer=answers[start + r],
                    token_ids=tuple(batch.input_ids[r, :p].tolist()),
                    offsets=tuple(batch.offsets[r]),
                    scores=tuple(scores[r, :p].tolist()),
                    logprob=float(out.logprob[r]),
                    baseline_logprob=None if out.baseline_logprob is None else float(out.baseline_logprob[r]),
                )


def iter_contrast(
    lm: LoadedModel,
    prompts: Sequence[str],
    answers: Sequence[str],
    rivals: Sequence[str],
    cfg: AttributionConfig | None = None,
    ids: Sequence[str] | None = None,
    spans: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> Iterator[TokenScores]:
    """Scores of log p(answer) - log p(rival) for a method linear in its objective: each token's
    score for the answer minus its score for the rival, and ``logprob`` the margin between them."""
    cfg = cfg or AttributionConfig()
    for a, b in zip(iter_attribute(lm, prompts, answers, cfg, ids, spans),
                    iter_attribute(lm, prompts, rivals, cfg, ids, spans)):
        base = None if a.baseline_logprob is None or b.baseline_logprob is None \
            else a.baseline_logprob - b.baseline_logprob
        yield replace(a, scores=tuple(x - y for x, y in zip(a.scores, b.scores)), logprob=a.logprob - b.logprob,
                      baseline_logprob=base)
