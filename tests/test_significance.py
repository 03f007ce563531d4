"""Paired cluster bootstrap of accuracy differences: known differences, the cluster resampling,
pairing, reproducibility, the report's sentences and reading predictions from a run folder."""

from __future__ import annotations

import json

import pytest

from saliency_distill.errors import DataError
from saliency_distill.reporting import compare_modes, paired_bootstrap, read_correctness, write_report
from saliency_distill.reporting.significance import comparisons, significance_sentence, two_level_bootstrap
from saliency_distill.run_dir import RunDir

N = 1000


def shifted(right: int, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[int, dict[str, bool]]:
    """``right`` of N examples correct per seed; which ones moves with the seed, so examples differ
    across seeds while every seed has exactly ``right`` correct."""
    return {s: {f"q{i}": (i + 100 * s) % N < right for i in range(N)} for s in seeds}


def test_known_difference_is_exact_and_its_interval_excludes_zero():
    # Per seed, A is right on 700 examples, B on 600, and B's right ones are a subset of A's:
    # the paired difference is exactly 300 of 3000 pairs.
    result = paired_bootstrap(shifted(700), shifted(600), n_resamples=2000, seed=0)
    assert result.difference == 10.0
    assert (result.n_pairs, result.n_examples, result.n_unpaired) == (3000, 1000, 0)
    # The seeds' A-only examples are disjoint: 300 examples average 1/3 over their seeds, 700
    # average 0, so the SE is sqrt((0.3 / 9 - 0.01) / 1000) = 0.48 points: about [9.05, 10.95].
    assert 8.8 < result.lower < 9.3 and 10.7 < result.upper < 11.2
    assert result.lower < result.difference < result.upper
    assert result.excludes_zero
    assert result.to_dict()["excludes_zero"] is True


def test_identical_predictions_give_zero_and_a_zero_interval():
    preds = shifted(640)
    result = paired_bootstrap(preds, preds)
    assert (result.difference, result.lower, result.upper) == (0.0, 0.0, 0.0)
    assert not result.excludes_zero


def test_small_noisy_difference_includes_zero():
    # 20 examples: A alone right on 3, B alone right on 1, both right on 8.
    a = {0: {f"q{i}": i < 11 for i in range(20)}}
    b = {0: {f"q{i}": 3 <= i < 11 or i == 19 for i in range(20)}}
    result = paired_bootstrap(a, b, seed=3)
    assert result.difference == 10.0
    assert result.lower < 0 < result.upper
    assert not result.excludes_zero


def test_unpaired_rows_are_ignored_and_counted():
    a = {0: {"q1": True, "q2": False, "only_a": True}, 1: {"q1": True}, 2: {"q1": True}}
    b = {0: {"q1": False, "q2": False, "only_b": False}, 1: {"q1": True}}
    result = paired_bootstrap(a, b)
    # Pairs: (0, q1) +1, (0, q2) 0, (1, q1) 0; unpaired: (0, only_a), (0, only_b), (2, q1).
    assert (result.n_pairs, result.n_examples, result.n_unpaired) == (3, 2, 3)
    assert result.difference == pytest.approx(100 / 3)
    with pytest.raises(DataError, match="no \\(seed, example id\\) answered in both"):
        paired_bootstrap({0: {"a": True}}, {0: {"b": True}})


def test_seeds_of_an_example_are_resampled_together():
    # Copying one seed's answers to three seeds adds no evidence: a cluster bootstrap over
    # examples draws the same examples with the same generator seed, so the interval is the same,
    # where resampling the 3000 pairs independently would shrink it by about sqrt(3).
    one = {0: shifted(700)[0]}, {0: shifted(600)[0]}
    three = ({s: one[0][0] for s in range(3)}, {s: one[1][0] for s in range(3)})
    r1, r3 = paired_bootstrap(*one, seed=5), paired_bootstrap(*three, seed=5)
    assert (r3.n_pairs, r1.n_pairs) == (3000, 1000)
    assert (r3.difference, r3.lower, r3.upper) == pytest.approx((r1.difference, r1.lower, r1.upper), abs=1e-9)


def test_generator_seed_makes_it_reproducible():
    a, b = shifted(700), shifted(620)
    first, again, other = paired_bootstrap(a, b, seed=1), paired_bootstrap(a, b, seed=1), paired_bootstrap(a, b, seed=2)
    assert first == again
    assert (first.lower, first.upper) != (other.lower, other.upper)
    assert first.difference == other.difference


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap(shifted(1), shifted(1), n_resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(shifted(1), shifted(1), confidence=1.0)


def test_comparisons_against_both_baselines_once_each():
    assert comparisons(["standard", "teacher-label", "saliency", "llm-rationale"]) == [
        ("teacher-label", "standard"), ("teacher-label", "llm-rationale"), ("saliency", "standard"),
        ("saliency", "llm-rationale"), ("llm-rationale", "standard")]
    assert comparisons(["saliency", "random"]) == []


def test_compare_modes_marks_modes_without_predictions():
    entries = compare_modes({"standard": shifted(600), "saliency": shifted(700)},
                            ["standard", "saliency", "teacher-label"], n_resamples=200)
    assert [(e["mode"], e["baseline"]) for e in entries] == [("saliency", "standard"), ("teacher-label", "standard")]
    assert entries[0]["difference"] == 10.0 and entries[0]["excludes_zero"] is True
    assert entries[1] == {"mode": "teacher-label", "baseline": "standard", "difference": None,
                          "reason": "no per-example predictions for teacher-label"}
    json.dumps(entries)  # significance.json takes them as they are


def test_sentences():
    base = {"mode": "saliency", "baseline": "standard", "difference": 2.134, "lower": 0.41, "upper": 3.9,
            "n_pairs": 3663, "n_unpaired": 0, "confidence": 0.95, "excludes_zero": True}
    assert significance_sentence(base) == ("saliency vs standard: +2.13 points [0.41, 3.90], 3,663 pairs: "
                                           "the interval excludes 0, so the difference is significant at 95%.")
    noisy = {**base, "difference": -0.3, "lower": -1.9, "upper": 1.25, "n_unpaired": 1221, "excludes_zero": False}
    assert significance_sentence(noisy) == ("saliency vs standard: -0.30 points [-1.90, 1.25], 3,663 pairs "
                                            "(1,221 unpaired left out): the interval includes 0: no significant "
                                            "difference at 95%.")
    assert significance_sentence({"mode": "random", "baseline": "standard", "difference": None,
                                  "reason": "no per-example predictions for random"}) == (
        "random vs standard: no interval (no per-example predictions for random).")


def write_predictions(run_dir, mode: str, seed: int, answers: dict[str, bool]) -> None:
    folder = RunDir(run_dir).student(mode, seed)
    folder.mkdir(parents=True)
    rows = [{"id": i, "prediction": "x", "gold": "x" if ok else "y", "correct": ok} for i, ok in answers.items()]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_states_the_significance_from_a_run_folder(tmp_path):
    standard, saliency = shifted(600), shifted(700)
    records = []
    for mode, preds in (("standard", standard), ("saliency", saliency), ("random", None)):
        for seed in (0, 1, 2):
            records.append({"mode": mode, "seed": seed, "accuracy": 0.6, "n": N})
            if preds is not None:
                write_predictions(tmp_path, mode, seed, preds[seed])
    correctness = read_correctness(tmp_path, records)
    assert sorted(correctness) == ["saliency", "standard"] and sorted(correctness["saliency"]) == [0, 1, 2]
    assert correctness["saliency"][1] == saliency[1]

    folder = write_report(tmp_path / "report", records, config={}, teacher=None, analysis=None, environment={},
                          title="t", correctness=correctness)
    md = (folder / "results.md").read_text()
    expected = paired_bootstrap(saliency, standard)
    sentence = (f"- saliency vs standard: +10.00 points [{expected.lower:.2f}, {expected.upper:.2f}], 3,000 pairs: "
                "the interval excludes 0, so the difference is significant at 95%. Seeds resampled too (3 seeds, "
                "1,000 examples): ")
    assert "## Significance\n" in md and sentence in md
    assert "- random vs standard: no interval (no per-example predictions for random).\n" in md
    saved = json.loads((folder / "significance.json").read_text())
    two_level = two_level_bootstrap(saliency, standard)
    assert saved[0] == {"mode": "saliency", "baseline": "standard", **expected.to_dict(), "two_level": two_level}
    t = two_level["seed_t"]
    assert (f"[{two_level['lower']:.2f}, {two_level['upper']:.2f}], excludes 0; t interval over the per-seed "
            f"differences [{t[0]:.2f}, {t[1]:.2f}].\n") in md


def test_report_without_predictions_says_so(tmp_path):
    records = [{"mode": "standard", "seed": 0, "accuracy": 0.5}, {"mode": "saliency", "seed": 0, "accuracy": 0.6}]
    md = (write_report(tmp_path, records, config={}, teacher=None, analysis=None, environment={},
                       title="t") / "results.md").read_text()
    assert ("- saliency vs standard: no interval (no per-example predictions for saliency and standard).\n"
            in md)
    only_standard = write_report(tmp_path / "b", records[:1], config={}, teacher=None, analysis=None,
                                 environment={}, title="t")
    assert "## Significance" not in (only_standard / "results.md").read_text()
    assert json.loads((only_standard / "significance.json").read_text()) == []


def test_malformed_prediction_row_names_the_file(tmp_path):
    folder = RunDir(tmp_path).student("standard", 0)
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text('{"id": "q1", "correct": true}\n{"id": "q2"}\n')
    with pytest.raises(DataError, match="predictions.jsonl:2: a prediction row needs 'id' and 'correct'"):
        read_correctness(tmp_path, [{"mode": "standard", "seed": 0}])


def test_random_words_is_the_control_every_rationale_mode_is_compared_with():
    from saliency_distill.reporting.significance import comparisons

    pairs = comparisons(["standard", "saliency", "random-words", "human-rationale"])
    assert ("saliency", "random-words") in pairs and ("human-rationale", "random-words") in pairs
    assert ("random-words", "standard") in pairs and ("standard", "random-words") not in pairs


def _synthetic(seed_shift: list[float], n: int = 400) -> tuple[dict, dict]:
    """A baseline right on 50% of n examples under every seed, and a mode right on 60% plus a
    per-seed shift (the training noise) of the examples, by a fixed random pattern."""
    import numpy as np

    rng = np.random.default_rng(1)
    ease = rng.permutation((np.arange(n) + 0.5) / n)  # an example's difficulty, shared by every seed and both modes
    ids = [f"e{i}" for i in range(n)]
    base = {s: {i: bool(ease[k] < 0.5) for k, i in enumerate(ids)} for s in range(len(seed_shift))}
    mode = {s: {i: bool(ease[k] < 0.6 + shift) for k, i in enumerate(ids)} for s, shift in enumerate(seed_shift)}
    return mode, base


def test_two_level_interval_widens_when_seeds_spread():
    from saliency_distill.reporting.significance import paired_bootstrap, two_level_bootstrap

    calm_mode, calm_base = _synthetic([0.0] * 5)
    wild_mode, wild_base = _synthetic([-0.18, 0.12, -0.1, 0.2, -0.04])
    calm = two_level_bootstrap(calm_mode, calm_base)
    wild = two_level_bootstrap(wild_mode, wild_base)
    examples_only = paired_bootstrap(wild_mode, wild_base)
    assert calm["n_seeds"] == wild["n_seeds"] == 5 and calm["n_examples"] == 400
    assert calm["difference"] == pytest.approx(10.0)
    assert wild["difference"] == pytest.approx(examples_only.difference)
    width = {k: v["upper"] - v["lower"] for k, v in (("calm", calm), ("wild", wild))}
    assert width["wild"] > 2 * width["calm"]
    assert width["wild"] > 2 * (examples_only.upper - examples_only.lower)
    assert wild["lower"] < 0 < examples_only.lower  # the seed spread is what makes the gain uncertain


def test_two_level_with_one_seed_is_the_example_level_interval():
    from saliency_distill.reporting.significance import paired_bootstrap, two_level_bootstrap

    mode, base = _synthetic([0.0])
    one = two_level_bootstrap(mode, base, n_resamples=4000)
    flat = paired_bootstrap(mode, base, n_resamples=4000)
    assert one["n_seeds"] == 1
    assert one["lower"] == pytest.approx(flat.lower, abs=0.6) and one["upper"] == pytest.approx(flat.upper, abs=0.6)


def test_compare_modes_reports_both_intervals():
    from saliency_distill.reporting.significance import compare_modes, significance_sentence

    mode, base = _synthetic([0.05, -0.05, 0.0])
    [entry] = compare_modes({"saliency": mode, "standard": base}, ["standard", "saliency"])
    assert entry["two_level"]["n_seeds"] == 3
    assert "Seeds resampled too (3 seeds, 400 examples)" in significance_sentence(entry)


def test_seed_t_interval_is_the_textbook_one():
    from saliency_distill.reporting.significance import per_seed_differences, seed_t_interval

    # the study's e-SNLI 25% per-seed gains: mean 6.933, sd 4.118, t(2) = 4.303 -> half-width 10.23
    low, high = seed_t_interval([3.5, 5.8, 11.5])
    assert low == pytest.approx(6.9333 - 10.2312, abs=1e-3) and high == pytest.approx(6.9333 + 10.2312, abs=1e-3)
    assert seed_t_interval([4.0]) is None
    mode, base = _synthetic([0.1, -0.1])
    assert per_seed_differences(mode, base) == pytest.approx([20.0, 0.0])


def test_headline_names_the_best_mode_against_standard_with_the_seed_level_interval(tmp_path):
    from saliency_distill.reporting import aggregate
    from saliency_distill.reporting.significance import headline

    preds = {"standard": shifted(400), "pool-label": shifted(700), "pool-soft": shifted(650)}
    records = [{"mode": m, "seed": s, "accuracy": sum(p[s].values()) / N, "n": N}
               for m, p in preds.items() for s in (0, 1, 2)]
    for r in records:
        write_predictions(tmp_path, r["mode"], r["seed"], preds[r["mode"]][r["seed"]])
    folder = write_report(tmp_path / "report", records, config={}, teacher=None, analysis=None, environment={},
                          title="t", correctness=read_correctness(tmp_path, records))
    entries = json.loads((folder / "significance.json").read_text())
    two = next(e for e in entries if e["mode"] == "pool-label" and e["baseline"] == "standard")["two_level"]
    sentence = headline(entries, aggregate(records))
    assert sentence == (f"pool-label 70.0% against standard 40.0% on the same labels: +30.0 points, 95% interval "
                        f"[{two['lower']:+.1f}, {two['upper']:+.1f}] (test examples and 3 training seeds resampled): "
                        "pool-label beats standard.")
    assert f"**{sentence}**" in (folder / "results.md").read_text()
    assert f"<strong>{sentence}</strong>" in (folder / "report.html").read_text()
    # no gain: the sentence says so; no standard to compare with: no sentence
    same = {"standard": shifted(500), "saliency": shifted(500)}
    rows = [{"mode": m, "accuracy_mean": 0.5} for m in same]
    tie = compare_modes(same, ["standard", "saliency"])
    assert headline(tie, rows).endswith("no difference shown between saliency and standard (the interval includes 0).")
    assert headline(compare_modes({"a": shifted(5), "b": shifted(6)}, ["a", "b"]), rows) is None


def test_headline_picks_the_mode_by_validation_where_every_mode_has_it():
    from saliency_distill.reporting.significance import headline

    preds = {"standard": shifted(400), "pool-label": shifted(700), "pool-soft": shifted(650)}
    entries = compare_modes(preds, list(preds))
    rows = [{"mode": "standard", "accuracy_mean": 0.4, "validation_accuracy_mean": 0.5},
            {"mode": "pool-label", "accuracy_mean": 0.7, "validation_accuracy_mean": 0.6},
            {"mode": "pool-soft", "accuracy_mean": 0.65, "validation_accuracy_mean": 0.62}]
    assert headline(entries, rows).startswith("pool-soft 65.0% against standard 40.0%")  # validation's choice
    rows[1]["validation_accuracy_mean"] = None  # one mode without it: test accuracy decides
    assert headline(entries, rows).startswith("pool-label 70.0% against standard 40.0%")
