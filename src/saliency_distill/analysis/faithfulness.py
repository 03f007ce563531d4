"""Faithfulness of rationales: does the teacher's answer depend on the rationale words?

For a rationale-store row (``prompt``, its content ``words`` with character spans, the
``rationale_words`` and the ``target`` the teacher was attributed on), with f(x) = log p(target | x)
the summed log-probability that attribution differentiated (teacher forward passes only):

- comprehensiveness = f(prompt) - f(prompt without the rationale words): how much the answer loses
  when they are cut out; higher = the rationale is more necessary;
- sufficiency = f(prompt) - f(prompt with only the rationale words of its content): how much the
  answer loses when every other content word is cut out; lower = the rationale is more sufficient
  (0: as good as the whole input; negative: better than it).

Template text (instructions, demonstrations, "Question:", option labels, "Answer:") is never cut:
only the example's content words are. Each figure is also computed for as many random content
words (the same candidates and rules as the rationale: no stopwords, each word once), drawn per
example from ``seed`` and the example id, so a row's baseline never depends on the other rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import DataError
from ..models import LoadedModel
from ..rationale import RationaleConfig, Word, select
from ..teacher.scoring import sequence_logprobs
from .html import rationale_positions
from .overlap import _mean, _percent

# (prompts, targets) -> log p(target | prompt) per pair, aligned with the inputs.
Scorer = Callable[[Sequence[str], Sequence[str]], Sequence[float]]

VARIANTS = ("full", "without_rationale", "only_rationale", "without_random", "only_random")
_HSPACE = " \t"


def edit_prompt(prompt: str, remove: Iterable[tuple[int, int]]) -> str:
    """``prompt`` without the characters of the half-open spans ``remove`` (any order, may overlap).

    Only the whitespace that meets at a cut changes, so no spans give ``prompt`` unchanged:
    spaces or tabs on both sides of a cut keep those before it ("keep a plate" minus "a" is
    "keep plate"); a cut at the start of the prompt or of a line drops the spaces after it, and a
    cut at the end of the prompt or of a line the spaces before it ("(a) cupboard\\n" minus
    "cupboard" is "(a)\\n"). Punctuation and newlines stay: "washing it?" minus "it" is "washing ?".
    """
    merged: list[list[int]] = []
    for start, end in sorted((s, e) for s, e in remove if e > s):
        if start < 0 or end > len(prompt):
            raise ValueError(f"span ({start}, {end}) is outside the prompt ({len(prompt)} characters)")
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    if not merged:
        return prompt
    text = prompt[: merged[0][0]]
    for (_, end), (start, _) in zip(merged, [*merged[1:], [len(prompt), len(prompt)]]):
        text = _join(text, prompt[end:start])
    return text


def _join(left: str, right: str) -> str:
    """``left + right`` across a cut, without doubled or dangling spaces at the seam."""
    if (not left or left[-1] == "\n" or left[-1] in _HSPACE) and right[:1] in (" ", "\t"):
        right = right.lstrip(_HSPACE)
    if not right or right[0] == "\n":
        left = left.rstrip(_HSPACE)
    return left + right


def teacher_scorer(lm: LoadedModel, batch_size: int = 8) -> Scorer:
    """A :data:`Scorer` running ``lm``: :func:`~saliency_distill.teacher.scoring.sequence_logprobs`
    (summed log p of the target after the prompt, as scored and attributed), in batches."""

    def score(prompts: Sequence[str], targets: Sequence[str]) -> list[float]:
        return sequence_logprobs(lm, prompts, targets, batch_size)[0]

    return score


def memoized(scorer: Scorer) -> Scorer:
    """``scorer`` that scores each distinct (prompt, target) once over all its calls. Candidates
    that rank the same words differently share most prompts: the whole prompt, and the random-word
    variants (drawn from the content words only), which are the same for every method at a k."""
    cache: dict[tuple[str, str], float] = {}

    def score(prompts: Sequence[str], targets: Sequence[str]) -> list[float]:
        pairs = list(zip(prompts, targets))
        todo = [pair for pair in dict.fromkeys(pairs) if pair not in cache]
        if todo:
            cache.update(zip(todo, scorer([p for p, _ in todo], [t for _, t in todo])))
        return [cache[pair] for pair in pairs]

    return score


def rationale_indices(row: dict[str, Any], cfg: RationaleConfig) -> list[int]:
    """Indices into ``row["words"]`` of the row's rationale words.

    The extraction rule (:func:`~saliency_distill.rationale.select` under the store's rationale
    config) is re-run on the stored scores; when it does not give the stored words back (another
    rule, rounding ties) each word is matched to its occurrence in the prompt instead.
    """
    wanted = [str(w) for w in row.get("rationale_words") or []]
    if not wanted:
        return []
    words = _words(row)
    chosen = select(words, replace(cfg, k=len(wanted)))
    if [w.text for w in chosen] == wanted:
        index = {w.start: i for i, w in enumerate(words)}
        return [index[w.start] for w in chosen]
    return sorted(rationale_positions(row["words"], wanted))


def random_indices(row: dict[str, Any], n: int, seed: int, cfg: RationaleConfig) -> list[int]:
    """``n`` random content words of ``row`` by the rationale's rules, seeded by ``seed`` and the id."""
    rng = random.Random(f"{seed}:{row['id']}")
    words = [replace(w, score=rng.random()) for w in _words(row)]
    index = {w.start: i for i, w in enumerate(words)}
    return [index[w.start] for w in select(words, replace(cfg, k=n))]


def _words(row: dict[str, Any]) -> list[Word]:
    prompt = str(row.get("prompt") or "")
    words = []
    for i, word in enumerate(row.get("words") or []):
        if not isinstance(word, (list, tuple)) or len(word) != 4:
            raise DataError(f"rationale row {row.get('id')}: word {i} is not [text, score, start, end]: {word!r}")
        text, score, start, end = word
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(prompt)):
            raise DataError(f"rationale row {row.get('id')}: word {i} {text!r} has span ({start!r}, {end!r}) "
                            f"outside the prompt ({len(prompt)} characters)")
        words.append(Word(str(text), start, end, float(score)))
    return words


def variants(row: dict[str, Any], seed: int = 0, cfg: RationaleConfig | None = None) -> dict[str, Any] | None:
    """The five prompts of :data:`VARIANTS` for ``row`` and the words cut or kept (None without a
    rationale). ``cfg``: the store's rationale config (default: the default one)."""
    cfg = cfg or RationaleConfig()
    spans = [(s, e) for _, _, s, e in row.get("words") or []]
    chosen = rationale_indices(row, cfg)
    if not chosen:
        return None
    randoms = random_indices(row, len(chosen), seed, cfg)
    prompt = str(row["prompt"])

    def others(keep: list[int]) -> list[tuple[int, int]]:
        kept = set(keep)
        return [span for i, span in enumerate(spans) if i not in kept]

    return {
        "prompts": {
            "full": prompt,
            "without_rationale": edit_prompt(prompt, [spans[i] for i in chosen]),
            "only_rationale": edit_prompt(prompt, others(chosen)),
            "without_random": edit_prompt(prompt, [spans[i] for i in randoms]),
            "only_random": edit_prompt(prompt, others(randoms)),
        },
        "rationale": [row["words"][i][0] for i in chosen],
        "random": [row["words"][i][0] for i in randoms],
    }


def score_rows(rows: Sequence[dict[str, Any]], scorer: Scorer, seed: int = 0,
               cfg: RationaleConfig | None = None) -> list[dict[str, Any]]:
    """Per row: the four figures (``comprehensiveness``, ``sufficiency`` and their ``_random``
    baselines), the log-probabilities of every variant and the words; ``skipped`` for a row
    without rationale words. One scorer call for all rows; a prompt that an edit leaves
    unchanged is scored once, so its drop is exactly 0."""
    built = [(row, variants(row, seed, cfg)) for row in rows]
    pairs = list(dict.fromkeys((v["prompts"][name], str(row["target"]))
                               for row, v in built if v is not None for name in VARIANTS))
    logps = dict(zip(pairs, scorer([p for p, _ in pairs], [t for _, t in pairs]))) if pairs else {}
    out = []
    for row, v in built:
        if v is None:
            out.append({"id": row["id"], "skipped": "no rationale words"})
            continue
        f = {name: float(logps[(v["prompts"][name], str(row["target"]))]) for name in VARIANTS}
        out.append({
            "id": row["id"],
            "comprehensiveness": f["full"] - f["without_rationale"],
            "comprehensiveness_random": f["full"] - f["without_random"],
            "sufficiency": f["full"] - f["only_rationale"],
            "sufficiency_random": f["full"] - f["only_random"],
            "logprob": f,
            "rationale": v["rationale"],
            "random": v["random"],
        })
    return out


def summarise_faithfulness(scored: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means over the scored rows, how often the rationale beats random words (strictly: a larger
    comprehensiveness, a smaller sufficiency drop; ties are not wins), in %, and the mean paired
    difference rationale - random words with its 95% bootstrap interval over the rows."""
    done = [r for r in scored if "skipped" not in r]
    out: dict[str, Any] = {"n": len(done), "skipped": len(scored) - len(done)}
    for name, better in (("comprehensiveness", 1.0), ("sufficiency", -1.0)):
        out[name] = {
            "saliency": _mean([r[name] for r in done]),
            "random": _mean([r[f"{name}_random"] for r in done]),
            "saliency_beats_random": _percent([better * (r[name] - r[f"{name}_random"]) > 0 for r in done]),
            "difference": mean_interval([r[name] - r[f"{name}_random"] for r in done]),
        }
    out["mean_logprob_full"] = _mean([r["logprob"]["full"] for r in done])
    return out


def mean_interval(values: Sequence[float], confidence: float = 0.95, resamples: int = 4000,
                  seed: int = 0) -> dict[str, Any] | None:
    """The mean of ``values`` with a percentile bootstrap interval (seeded: the same values give
    the same interval); None without values."""
    import numpy as np

    if not values:
        return None
    x = np.asarray(values, dtype=np.float64)
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    lower, upper = np.percentile(means, [tail, 100 - tail])
    return {"mean": round(float(x.mean()), 4), "lower": round(float(lower), 4), "upper": round(float(upper), 4),
            "confidence": confidence}
