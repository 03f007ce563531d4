"""teacher.reuse_answers and attribution.reuse_rationales: answers and rationale rows taken from an
earlier run that made them the same way, instead of computed again; refused, with the key, when
the source differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saliency_distill.cli.main import main
from tests.conftest import write_planets

POOLED = "student.modes=[pool-label]"  # the teacher answers the pool for a mode that learns from it


def _args(root: Path, data: Path, dirs, *extra: str) -> list[str]:
    return [f"run_dir={root}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={dirs['qwen2']}", "teacher.finetune=false",
            "progress=false", *extra]


def _answers(folder: Path) -> dict[str, dict]:
    rows = {}
    for path in folder.glob("teacher/answers_*.jsonl"):
        rows.update({r["id"]: r for r in map(json.loads, path.read_text().splitlines())})
    return rows


def test_a_pool_run_takes_every_answer_from_the_run_that_made_them(tmp_path, tiny_model_dirs, monkeypatch):
    from saliency_distill.teacher import answer

    data = write_planets(tmp_path)
    assert main(["-q", "teach", *_args(tmp_path / "source", data, tiny_model_dirs)]) == 0
    assert main(["-q", "teach", *_args(tmp_path / "fresh", data, tiny_model_dirs, "task.labeled=6", POOLED)]) == 0

    def no_model(*a, **k):
        raise AssertionError("the teacher was loaded although every answer was found")

    monkeypatch.setattr(answer, "load_model", no_model)
    monkeypatch.setattr(answer, "answer_examples", no_model)
    reuse = f"teacher.reuse_answers=[{tmp_path / 'source'}]"
    assert main(["-q", "teach", *_args(tmp_path / "reused", data, tiny_model_dirs, "task.labeled=6", POOLED, reuse)]) == 0

    fresh, reused, source = (_answers(tmp_path / n) for n in ("fresh", "reused", "source"))
    assert set(reused) == set(fresh) and len(reused) == 24
    for i, row in reused.items():
        assert row["answer"] == fresh[i]["answer"] == source[i]["answer"]
        assert row["logprobs"] == pytest.approx(fresh[i]["logprobs"], abs=1e-3)  # other batches: last digits
        assert (row["gold"], row["correct"]) == (fresh[i]["gold"], fresh[i]["correct"])  # None in the pool
    pool = (tmp_path / "reused" / "teacher" / "answers_pool.jsonl").read_text().splitlines()
    assert pool and all(json.loads(r)["gold"] is None and json.loads(r)["correct"] is None for r in pool)
    metrics = {n: json.loads((tmp_path / n / "teacher" / "metrics.json").read_text()) for n in ("fresh", "reused")}
    assert metrics["reused"]["config_hash"] == metrics["fresh"]["config_hash"]  # not part of the identity
    assert metrics["reused"]["reused_answers"] == 24 and metrics["fresh"]["reused_answers"] == 0
    assert metrics["reused"]["accuracy"] == metrics["fresh"]["accuracy"]


def test_answers_missing_from_the_source_are_computed_and_only_they(tmp_path, tiny_model_dirs, monkeypatch):
    from saliency_distill.teacher import answer

    data = write_planets(tmp_path)
    assert main(["-q", "teach", *_args(tmp_path / "source", data, tiny_model_dirs, "teacher.splits=[test]")]) == 0
    have = set(_answers(tmp_path / "source"))
    real, asked = answer.answer_examples, []
    monkeypatch.setattr(answer, "answer_examples",
                        lambda lm, p, chunk, cfg: asked.extend(ex.id for ex in chunk) or real(lm, p, chunk, cfg))
    reuse = f"teacher.reuse_answers=[{tmp_path / 'source'}]"
    assert main(["-q", "teach", *_args(tmp_path / "run", data, tiny_model_dirs, reuse)]) == 0
    everything = set(_answers(tmp_path / "run"))
    assert have and asked and not have & set(asked) and set(asked) | have == everything


def test_a_calibrated_source_is_calibrated_again_from_its_raw_scores(tmp_path, tiny_model_dirs, monkeypatch):
    from saliency_distill.teacher import answer

    data = write_planets(tmp_path)
    prior = "teacher.calibration=prior"
    assert main(["-q", "teach", *_args(tmp_path / "source", data, tiny_model_dirs, prior)]) == 0
    assert main(["-q", "teach", *_args(tmp_path / "fresh", data, tiny_model_dirs, prior, "task.labeled=6", POOLED)]) == 0
    asked = []
    monkeypatch.setattr(answer, "answer_examples", lambda lm, p, chunk, cfg: asked.extend(chunk) or [])
    reuse = f"teacher.reuse_answers=[{tmp_path / 'source'}]"
    assert main(["-q", "teach", *_args(tmp_path / "reused", data, tiny_model_dirs, prior, "task.labeled=6",
                                       POOLED, reuse)]) == 0
    fresh, reused = _answers(tmp_path / "fresh"), _answers(tmp_path / "reused")
    assert not asked and set(reused) == set(fresh) and len(reused) == 24
    for i, row in reused.items():
        for key in ("answer", "answer_uncalibrated", "target"):
            assert row[key] == fresh[i][key], (i, key)
        for key in ("logprobs", "logprobs_raw"):  # calibrated once, from the raw scores, not twice
            assert row[key] == pytest.approx(fresh[i][key], abs=1e-3), (i, key)
    metrics = {n: json.loads((tmp_path / n / "teacher" / "metrics.json").read_text()) for n in ("fresh", "reused")}
    biases = [metrics[n]["calibration"]["bias"] for n in ("fresh", "reused")]
    assert biases[0].keys() == biases[1].keys() and any(any(b) for b in biases[0].values())  # not the identity
    assert all(biases[1][n] == pytest.approx(biases[0][n], abs=1e-3) for n in biases[0])
    assert metrics["reused"]["accuracy"] == metrics["fresh"]["accuracy"]


@pytest.mark.parametrize(("change", "key"), [("teacher.format=text", "teacher.format"),
                                              ("teacher.shots=1", "teacher.shots"),
                                              ("teacher.scoring=mean", "teacher.scoring"),
                                              ("teacher.calibration=contextual", "teacher.calibration")])
def test_a_source_that_asked_otherwise_is_refused_naming_the_key(tmp_path, tiny_model_dirs, capsys, change, key):
    data = write_planets(tmp_path)
    assert main(["-q", "teach", *_args(tmp_path / "source", data, tiny_model_dirs, change)]) == 0
    capsys.readouterr()
    reuse = f"teacher.reuse_answers=[{tmp_path / 'source'}]"
    assert main(["-q", "teach", *_args(tmp_path / "run", data, tiny_model_dirs, reuse)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err and "teacher.reuse_answers" in err, err
    assert not (tmp_path / "run" / "teacher" / "metrics.json").exists()


def test_an_unfinished_source_is_refused(tmp_path, tiny_model_dirs, capsys):
    data = write_planets(tmp_path)
    (tmp_path / "empty").mkdir()
    reuse = f"teacher.reuse_answers=[{tmp_path / 'empty'}]"
    assert main(["-q", "teach", *_args(tmp_path / "run", data, tiny_model_dirs, reuse)]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.yaml is missing" in err and len(err.splitlines()) == 1


def _stores(folder: Path) -> dict[str, dict]:
    rows = {}
    for path in folder.glob("rationales/*.jsonl"):
        rows.update({r["id"]: r for r in map(json.loads, path.read_text().splitlines()[1:])})
    return rows


def test_a_pool_run_takes_its_rationales_from_the_run_that_attributed_them(tmp_path, tiny_model_dirs, monkeypatch):
    from saliency_distill import experiment
    from saliency_distill.teacher import answer

    data = write_planets(tmp_path)
    common = ["attribution.target=teacher", "attribution.method=input_x_gradient", "student.modes=[pool-saliency]",
              f"student.model.name={tiny_model_dirs['llama']}"]
    assert main(["-q", "attribute", *_args(tmp_path / "source", data, tiny_model_dirs, *common[:2],
                                           "rationale.k=3")]) == 0
    pool_run = [*common, "task.labeled=6", "rationale.k=2"]
    assert main(["-q", "attribute", *_args(tmp_path / "fresh", data, tiny_model_dirs, *pool_run)]) == 0

    def no_model(*a, **k):
        raise AssertionError("the teacher was loaded although every row was found")

    monkeypatch.setattr(answer, "load_model", no_model)
    monkeypatch.setattr(experiment, "load_model", no_model)
    source = tmp_path / "source"
    reuse = [f"teacher.reuse_answers=[{source}]", f"attribution.reuse_rationales=[{source}]"]
    assert main(["-q", "attribute", *_args(tmp_path / "reused", data, tiny_model_dirs, *pool_run, *reuse)]) == 0
    fresh, reused = _stores(tmp_path / "fresh"), _stores(tmp_path / "reused")
    assert set(reused) == set(fresh) == set(_stores(tmp_path / "source"))  # the 6 labels and the pool: source's train
    for i, row in reused.items():
        assert row["rationale_words"] == fresh[i]["rationale_words"] and len(row["rationale_words"]) <= 2  # this k
        assert [w[1] for w in row["words"]] == pytest.approx([w[1] for w in fresh[i]["words"]], abs=1e-4)
        assert (row["gold"], row["teacher_answer"]) == (fresh[i]["gold"], fresh[i]["teacher_answer"])
    pool = (tmp_path / "reused" / "rationales" / "pool.jsonl").read_text().splitlines()[1:]
    assert pool and all(json.loads(r)["gold"] is None for r in pool)  # no pool label comes back with a row
    headers = [json.loads((tmp_path / n / "rationales" / "pool.jsonl").read_text().splitlines()[0])["config_hash"]
               for n in ("fresh", "reused")]
    assert headers[0] == headers[1]  # not part of the store's identity


def test_rationales_attributed_otherwise_are_refused_naming_the_key(tmp_path, tiny_model_dirs, capsys):
    data = write_planets(tmp_path)
    assert main(["-q", "attribute", *_args(tmp_path / "source", data, tiny_model_dirs, "attribution.target=gold",
                                           "attribution.method=attention")]) == 0
    capsys.readouterr()
    reuse = f"attribution.reuse_rationales=[{tmp_path / 'source'}]"
    assert main(["-q", "attribute", *_args(tmp_path / "run", data, tiny_model_dirs, "attribution.target=gold",
                                           "attribution.method=input_x_gradient", reuse)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "attribution.method" in err and "attribution.reuse_rationales" in err, err
    assert not list((tmp_path / "run").glob("rationales/*.jsonl")) or all(
        len(p.read_text().splitlines()) == 1 for p in (tmp_path / "run").glob("rationales/*.jsonl"))
