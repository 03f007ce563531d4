"""Is a mode's accuracy gain over a baseline more than noise? A paired cluster bootstrap.

Mean ± std over seeds says how much training noise moves a mode's accuracy, not whether the gap
between two modes would survive another draw of test examples. Both modes answer the same test
examples under the same seeds, so the comparison is paired: a pair is one (seed, example id)
answered in both modes, and its difference is ``correct_mode - correct_baseline`` (-1, 0 or 1).
The answers of one example under different seeds are correlated (an easy question is easy for
every seed), so the bootstrap resamples *examples* with replacement and keeps every seed of a
resampled example (a cluster bootstrap); resampling the pairs one by one would treat the seeds
as independent evidence and give too narrow an interval.

That interval holds the trained students fixed: it says whether another draw of test examples
would keep the gap, not whether another draw of training seeds would. With few training rows the
seeds spread more than the gain, so :func:`two_level_bootstrap` resamples both: the seeds that
both modes were trained with (paired by seed), and the test examples, independently (a
bootstrap of the crossed seed x example design); with one seed it is the example-level interval.

Correctness is given per mode as ``{seed: {example id: correct}}``. Everything here is pure:
:func:`~saliency_distill.reporting.report.read_correctness` reads it from a run folder.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import DataError

logger = logging.getLogger(__name__)

# seed -> example id -> whether that run answered that example correctly.
Correctness = Mapping[int, Mapping[str, bool]]

DEFAULT_BASELINES = ("standard", "llm-rationale", "random-words", "pool-label", "pool-random-words",
                     "random-words-after", "random-consistency", "pool-random-words-after", "pool-random-consistency")
# random words: the control for any rationale; pool-label and the other random controls: for the pool modes,
# the one-sequence layout and consistency
DEFAULT_RESAMPLES = 2000
# Resample indices drawn per block (resamples x examples): bounds memory for large test sets.
_BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of a mode minus a baseline's, in percentage points, with a bootstrap interval."""

    difference: float  # over every pair, in points
    lower: float  # interval bounds, in points
    upper: float
    n_pairs: int  # (seed, example id) answered in both modes
    n_examples: int  # distinct example ids among the pairs: the units resampled
    n_unpaired: int  # (seed, example id) answered in only one of the two modes, left out
    confidence: float
    n_resamples: int
    seed: int  # of the resampling generator

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies strictly on one side of 0 (significant at ``confidence``)."""
        return self.lower > 0 or self.upper < 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, ``excludes_zero`` included."""
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def _clusters(mode: Correctness, baseline: Correctness) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per example id (sorted, so the result does not depend on dict order): the summed paired
    difference over its seeds, and how many seeds it has; then the pair and unpaired counts."""
    sums: dict[str, int] = {}
    counts: dict[str, int] = {}
    n_pairs = n_total = 0
    for seed in set(mode) | set(baseline):
        a, b = mode.get(seed, {}), baseline.get(seed, {})
        n_total += len(a) + len(b)
        for example in a.keys() & b.keys():
            sums[example] = sums.get(example, 0) + int(bool(a[example])) - int(bool(b[example]))
            counts[example] = counts.get(example, 0) + 1
            n_pairs += 1
    ids = sorted(sums)
    return (np.array([sums[i] for i in ids], dtype=np.int64), np.array([counts[i] for i in ids], dtype=np.int64),
            n_pairs, n_total - 2 * n_pairs)


def paired_bootstrap(mode: Correctness, baseline: Correctness, *, n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0, confidence: float = 0.95) -> PairedDifference:
    """The accuracy difference ``mode - baseline`` in points over the (seed, id) pairs present in
    both, and its percentile interval from ``n_resamples`` cluster-bootstrap resamples of the
    example ids (each keeping all its seeds), drawn by ``numpy.random.default_rng(seed)``.

    Raises :class:`DataError` when the two share no pair.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    sums, counts, n_pairs, n_unpaired = _clusters(mode, baseline)
    if n_pairs == 0:
        raise DataError(f"no (seed, example id) answered in both modes ({n_unpaired} unpaired): nothing to compare")
    # Integer numerator first: a difference that is a whole number of points comes out exact.
    difference = float(100 * int(sums.sum())) / float(counts.sum())
    rng = np.random.default_rng(seed)
    n_examples = len(sums)
    block = max(1, _BLOCK_ELEMENTS // n_examples)
    resampled = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        picks = rng.integers(0, n_examples, size=(stop - start, n_examples))  # (R, N) example indices
        # Every cluster has at least one pair, so no denominator is 0.
        resampled[start:stop] = 100.0 * sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - confidence) / 2
    lower, upper = np.quantile(resampled, [tail, 1 - tail])
    # + 0.0 turns -0.0 into 0.0, which would otherwise print as "-0.00".
    return PairedDifference(difference=difference + 0.0, lower=float(lower) + 0.0, upper=float(upper) + 0.0,
                            n_pairs=n_pairs, n_examples=n_examples, n_unpaired=n_unpaired,
                            confidence=confidence, n_resamples=n_resamples, seed=seed)


def two_level_bootstrap(mode: Correctness, baseline: Correctness, *, n_resamples: int = DEFAULT_RESAMPLES,
                        seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """The difference ``mode - baseline`` in points with an interval that includes training noise:
    each resample draws the shared seeds with replacement and, independently, the test examples
    answered under every shared seed in both modes, and averages the paired differences over the
    drawn (seed, example) cells. Returns ``difference``, ``lower``, ``upper``, ``n_seeds``,
    ``n_examples``, ``confidence``, ``n_resamples``; raises :class:`DataError` when no seed has
    an example answered in both."""
    seeds = sorted(s for s in set(mode) & set(baseline) if mode[s].keys() & baseline[s].keys())
    if not seeds:
        raise DataError("no seed with an example answered in both modes: nothing to compare")
    ids = sorted(set.intersection(*(set(mode[s]) & set(baseline[s]) for s in seeds)))
    if not ids:
        raise DataError("no example answered in both modes under every shared seed: nothing to compare")
    diff = np.array([[int(bool(mode[s][i])) - int(bool(baseline[s][i])) for i in ids] for s in seeds],
                    dtype=np.float64)  # (seeds, examples)
    rng = np.random.default_rng(seed)
    n_seeds, n_examples = diff.shape
    resampled = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // n_examples)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        # how often each seed and each example is drawn: the mean over the drawn cells is
        # seed_counts @ diff @ example_counts / (n_seeds * n_examples)
        seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=stop - start)
        example_counts = rng.multinomial(n_examples, np.full(n_examples, 1 / n_examples), size=stop - start)
        resampled[start:stop] = 100.0 * ((seed_counts @ diff) * example_counts).sum(axis=1) / (n_seeds * n_examples)
    tail = (1 - confidence) / 2
    lower, upper = np.quantile(resampled, [tail, 1 - tail])
    t = seed_t_interval(per_seed_differences(mode, baseline)) if confidence == 0.95 else None
    return {"difference": float(100 * diff.mean()) + 0.0, "lower": float(lower) + 0.0, "upper": float(upper) + 0.0,
            "n_seeds": n_seeds, "n_examples": n_examples, "confidence": confidence, "n_resamples": n_resamples,
            "seed_t": list(t) if t else None}


# Student's t, 97.5% quantile, by degrees of freedom (1-30): a 95% interval over a handful of seeds.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def seed_t_interval(per_seed: Sequence[float]) -> tuple[float, float] | None:
    """The 95% t interval of the mean of per-seed differences (each seed's accuracy difference):
    the textbook reading with few seeds, where a bootstrap over 3 seeds is too narrow (it cannot
    draw a value outside the 3 it has). None with fewer than 2 seeds."""
    n = len(per_seed)
    if n < 2:
        return None
    mean = float(np.mean(per_seed))
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * float(np.std(per_seed, ddof=1)) / np.sqrt(n)
    return mean - half + 0.0, mean + half + 0.0


def per_seed_differences(mode: Correctness, baseline: Correctness) -> list[float]:
    """Each shared seed's accuracy of ``mode`` minus ``baseline``, in points, over the examples both answered."""
    out = []
    for s in sorted(set(mode) & set(baseline)):
        ids = mode[s].keys() & baseline[s].keys()
        if ids:
            out.append(100 * sum(int(bool(mode[s][i])) - int(bool(baseline[s][i])) for i in ids) / len(ids))
    return out


def accuracy_interval(correct: Correctness, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                      confidence: float = 0.95) -> PairedDifference:
    """One mode's accuracy in % over its (seed, example id) answers, with the same cluster-bootstrap
    interval: the paired difference against a baseline that is wrong everywhere."""
    never = {s: dict.fromkeys(answers, False) for s, answers in correct.items()}
    return paired_bootstrap(correct, never, n_resamples=n_resamples, seed=seed, confidence=confidence)


def comparisons(modes: Sequence[str], baselines: Sequence[str] = DEFAULT_BASELINES) -> list[tuple[str, str]]:
    """``(mode, baseline)`` for every mode against every present baseline, in the order of
    ``modes``; a baseline is itself compared only with the baselines before it in ``baselines``
    (``llm-rationale`` vs ``standard``, not also the reverse)."""
    present = [b for b in baselines if b in modes]
    out: list[tuple[str, str]] = []
    for mode in modes:
        rivals = present[: present.index(mode)] if mode in present else present
        out += [(mode, baseline) for baseline in rivals]
    return out


def compare_modes(correctness: Mapping[str, Correctness], modes: Sequence[str],
                  baselines: Sequence[str] = DEFAULT_BASELINES, *, n_resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0, confidence: float = 0.95) -> list[dict[str, Any]]:
    """One JSON-able entry per :func:`comparisons` pair: ``mode``, ``baseline`` and the
    :class:`PairedDifference` fields, or, when either mode has no per-example predictions or the
    two share no pair, ``difference`` None and a ``reason``."""
    out: list[dict[str, Any]] = []
    for mode, baseline in comparisons(modes, baselines):
        entry: dict[str, Any] = {"mode": mode, "baseline": baseline}
        missing = [m for m in (mode, baseline) if not any(correctness.get(m, {}).values())]
        if missing:
            out.append({**entry, "difference": None,
                        "reason": "no per-example predictions for " + " and ".join(missing)})
            continue
        try:
            result = paired_bootstrap(correctness[mode], correctness[baseline], n_resamples=n_resamples,
                                      seed=seed, confidence=confidence)
        except DataError:
            out.append({**entry, "difference": None, "reason": "no example answered in both under the same seed"})
            continue
        entry = {**entry, **result.to_dict()}
        try:
            entry["two_level"] = two_level_bootstrap(correctness[mode], correctness[baseline],
                                                     n_resamples=n_resamples, seed=seed, confidence=confidence)
        except DataError:
            pass
        out.append(entry)
    logger.debug("bootstrapped %d of %d comparisons", sum(e["difference"] is not None for e in out), len(out))
    return out


def significance_sentence(entry: Mapping[str, Any]) -> str:
    """One line for a :func:`compare_modes` entry, e.g. ``saliency vs standard: +2.13 points
    [0.41, 3.90], 3,663 pairs: the interval excludes 0, so the difference is significant at 95%.``"""
    head = f"{entry['mode']} vs {entry['baseline']}"
    if entry.get("difference") is None:
        return f"{head}: no interval ({entry.get('reason', 'no per-example predictions')})."
    level = f"{100 * entry['confidence']:g}%"
    pairs = f"{entry['n_pairs']:,} pairs"
    if entry.get("n_unpaired"):
        pairs += f" ({entry['n_unpaired']:,} unpaired left out)"
    verdict = (f"the interval excludes 0, so the difference is significant at {level}" if entry["excludes_zero"]
               else f"the interval includes 0: no significant difference at {level}")
    interval = f"[{entry['lower']:.2f}, {entry['upper']:.2f}]"
    return f"{head}: {entry['difference']:+.2f} points {interval}, {pairs}: {verdict}.{two_level_clause(entry)}"


def two_level_clause(entry: Mapping[str, Any]) -> str:
    """`` Seeds resampled too (3 seeds): [-1.20, 5.10], includes 0.`` or an empty string."""
    two = entry.get("two_level")
    if not two:
        return ""
    if two["n_seeds"] < 2:
        return " One seed: training noise is not measured (train more seeds for an interval that includes it)."
    side = "excludes 0" if two["lower"] > 0 or two["upper"] < 0 else "includes 0"
    t = two.get("seed_t")
    t_text = f"; t interval over the per-seed differences [{t[0]:.2f}, {t[1]:.2f}]" if t else ""
    return (f" Seeds resampled too ({two['n_seeds']} seeds, {two['n_examples']:,} examples): "
            f"[{two['lower']:.2f}, {two['upper']:.2f}], {side}{t_text}.")


def headline(entries: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
             baseline: str = "standard") -> str | None:
    """One sentence on whether the best mode beat ``baseline`` (plain fine-tuning on the same labels):
    its accuracy beside the baseline's, the difference and the interval that resamples the training
    seeds as well as the test examples (the example-level one where there is one seed); None
    without a comparison against ``baseline``. The best mode is the one with the highest mean
    validation accuracy where every compared mode has one, else the highest test accuracy."""
    means = {r["mode"]: r.get("accuracy_mean") for r in rows}
    against = [e for e in entries if e.get("baseline") == baseline and e.get("difference") is not None
               and means.get(e["mode"]) is not None and means.get(baseline) is not None]
    if not against:
        return None
    chosen = {r["mode"]: r.get("validation_accuracy_mean") for r in rows}
    if any(chosen.get(e["mode"]) is None for e in against):
        chosen = means
    best = max(against, key=lambda e: chosen[e["mode"]])
    two = best.get("two_level") or {}
    if two.get("n_seeds", 0) >= 2:
        low, high = two["lower"], two["upper"]
        how = f"test examples and {two['n_seeds']} training seeds resampled"
    else:
        low, high = best["lower"], best["upper"]
        how = "test examples resampled; one seed, so training noise is not in it"
    level = f"{100 * best['confidence']:g}%"
    if low > 0:
        verdict = f"{best['mode']} beats {baseline}"
    elif high < 0:
        verdict = f"{best['mode']} is worse than {baseline}"
    else:
        verdict = f"no difference shown between {best['mode']} and {baseline} (the interval includes 0)"
    return (f"{best['mode']} {100 * means[best['mode']]:.1f}% against {baseline} {100 * means[baseline]:.1f}% "
            f"on the same labels: {best['difference']:+.1f} points, {level} interval [{low:+.1f}, {high:+.1f}] "
            f"({how}): {verdict}.")


def significance_lines(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``results.md`` section body: what was computed, then one bullet per comparison."""
    if not entries:
        return []
    done = [e for e in entries if e.get("difference") is not None]
    first = done[0] if done else {"confidence": 0.95, "n_resamples": DEFAULT_RESAMPLES}
    intro = (f"Accuracy difference in points (mode minus baseline) with a {100 * first['confidence']:g}% "
             f"paired bootstrap interval: {first['n_resamples']:,} resamples of the test examples, each "
             "keeping all its seeds; a pair is one example under one seed, answered in both modes. The second "
             "interval resamples the training seeds as well (two-level), so it also holds the spread between "
             "students trained with other seeds.")
    return [intro, "", *(f"- {significance_sentence(e)}" for e in entries)]
