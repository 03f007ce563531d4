from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from saliency_distill.data import Example, TaskConfig, get_task
from saliency_distill.errors import ConfigError, DataError
from saliency_distill.models import ModelConfig, load_model
from saliency_distill.student.modes import MODES, build_pairs, templates
from saliency_distill.student.stage import StudentConfig, train_and_evaluate
from saliency_distill.training import TrainConfig, train_supervised
from saliency_distill.training.losses import EXPLAIN, PREDICT

TASK = get_task("quartz")
CFG = TaskConfig()


def _examples(n=6, llm=True):
    return [Example(id=f"e{i}", fields={"question": f"Eric adds {i} resistors. The resistance"}, label="increases",
                    choices=("increases", "decreases"), llm_rationale=f"more resistors {i}" if llm else None)
            for i in range(n)]


def test_modes_build_the_right_pairs():
    exs = _examples(2)
    answers = {"e0": {"answer": "decreases"}, "e1": {"answer": "increases"}}
    rats = {"e0": "adds resistors", "e1": "resistance"}
    std = build_pairs("standard", TASK, CFG, exs)
    assert std.targets == ["increases", "increases"] and std.tasks == [PREDICT, PREDICT]
    assert std.prompts[0].startswith("Question: Eric adds 0 resistors") and std.prompts[0].endswith("\npredict:")
    tl = build_pairs("teacher-label", TASK, CFG, exs, teacher_answers=answers)
    assert tl.targets == ["decreases", "increases"]
    sal = build_pairs("saliency", TASK, CFG, exs, rationales=rats)
    assert sal.tasks == [PREDICT, EXPLAIN, PREDICT, EXPLAIN] and sal.ids == ["e0", "e0", "e1", "e1"]
    assert sal.targets == ["increases", "adds resistors", "increases", "resistance"]
    assert sal.prompts[1].startswith("Question:") and sal.prompts[1].endswith("\nexplain:")
    assert sal.prompts[1].removesuffix("explain:") == sal.prompts[0].removesuffix("predict:")
    p_t, e_t = templates("prefix", seq2seq=False)
    dsbs = build_pairs("saliency", TASK, CFG, exs, None, rats, p_t, e_t)
    assert dsbs.prompts[0].startswith("predict: Question:") and dsbs.prompts[1].startswith("explain: Question:")
    assert templates("auto", seq2seq=True) == ("predict: {input}", "explain: {input}")
    assert templates("auto", seq2seq=False) == ("{input}\npredict:", "{input}\nexplain:")
    llm = build_pairs("llm-rationale", TASK, CFG, exs)
    assert llm.targets[1] == "more resistors 0" and llm.multitask


def test_modes_missing_data_errors():
    with pytest.raises(DataError, match="mode llm-rationale needs LLM-written rationales"):
        build_pairs("llm-rationale", TASK, CFG, _examples(2, llm=False))
    with pytest.raises(DataError, match="example e0: no rationale"):
        build_pairs("saliency", TASK, CFG, _examples(2), rationales={})
    with pytest.raises(DataError, match="example e0: no teacher answer"):
        build_pairs("teacher-label", TASK, CFG, _examples(2), teacher_answers={})
    with pytest.raises(ConfigError, match="unknown training mode 'distill'"):
        StudentConfig(modes=["distill"])


def test_multitask_training_keeps_an_examples_tasks_in_one_batch(tiny_model_dirs, tmp_path, monkeypatch):
    import saliency_distill.training.trainer as layout

    seen = []
    original = layout._collate

    def spy(items, pad_token_id, seq2seq, cfg):
        batch = original(items, pad_token_id, seq2seq, cfg)
        seen.append(batch["target_task"].unique().tolist())
        assert batch["input_ids"].size(0) == 2  # one row per example: the prompt is shared
        return batch

    monkeypatch.setattr(layout, "_collate", spy)
    lm = load_model(str(tiny_model_dirs["llama"]))
    pairs = build_pairs("saliency", TASK, CFG, _examples(6), rationales={f"e{i}": "adds resistors" for i in range(6)})
    before = [p.detach().clone() for p in lm.model.parameters()]
    metrics = train_supervised(lm, list(zip(pairs.prompts, pairs.targets)),
                               TrainConfig(max_steps=3, batch_size=2, progress_bar=False, learning_rate=1e-3),
                               tmp_path, ids=pairs.ids, tasks=pairs.tasks, alpha=0.5)
    assert metrics["examples"] == 6 and metrics["sequences"] == 12
    assert seen and all(t == [PREDICT, EXPLAIN] for t in seen)  # both tasks of both examples in each batch
    assert any(not torch.equal(a, b) for a, b in zip(before, lm.model.parameters()))


def test_train_and_evaluate_writes_result_and_reuses_it(tiny_model_dirs, tmp_path):
    splits = {"train": _examples(6), "test": _examples(4)}
    cfg = StudentConfig(model=ModelConfig(name=str(tiny_model_dirs["qwen2"])), modes=["standard"],
                        train=TrainConfig(max_steps=2, progress_bar=False))
    rec = train_and_evaluate(CFG, cfg, "standard", 0, splits, tmp_path)
    folder = tmp_path / "students" / "standard" / "seed0"
    assert json.loads((folder / "result.json").read_text()) == rec
    assert rec["n"] == 4 and 0.0 <= rec["accuracy"] <= 1.0 and rec["train_steps"] == 2
    preds = (folder / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == 4
    assert not (folder / "model").exists() and not (folder / "checkpoints").exists()
    assert train_and_evaluate(CFG, cfg, "standard", 0, splits, tmp_path) == rec  # reused, not retrained
    with pytest.raises(ConfigError, match="student run standard seed 0 made under another config"):
        train_and_evaluate(CFG, StudentConfig(model=cfg.model, modes=["standard"], loss_average="sequence",
                                              train=cfg.train), "standard", 0, splits, tmp_path)
    other = StudentConfig(model=cfg.model, modes=["standard"], loss_average="sequence", train=cfg.train)
    again = train_and_evaluate(CFG, other, "standard", 0, splits, tmp_path, overwrite=True)
    assert again["config_hash"] != rec["config_hash"]
    assert json.loads((folder / "result.json").read_text())["config_hash"] == again["config_hash"]


def test_adding_a_seed_or_a_mode_keeps_the_finished_runs(tiny_model_dirs, tmp_path):
    splits = {"train": _examples(6), "test": _examples(4)}
    model, train = ModelConfig(name=str(tiny_model_dirs["qwen2"])), TrainConfig(max_steps=1, progress_bar=False)
    first = train_and_evaluate(CFG, StudentConfig(model=model, modes=["standard"], seeds=[0], train=train),
                               "standard", 0, splits, tmp_path)
    more = StudentConfig(model=model, modes=["standard", "saliency"], seeds=[0, 1, 2], train=train)
    folder = tmp_path / "students" / "standard" / "seed0"
    stamp = (folder / "result.json").stat().st_mtime_ns
    assert train_and_evaluate(CFG, more, "standard", 0, splits, tmp_path) == first  # reused, not retrained
    assert (folder / "result.json").stat().st_mtime_ns == stamp
    # alpha does not touch a mode with one loss: the standard run is the same at any alpha
    assert train_and_evaluate(CFG, dataclasses.replace(more, alpha=0.9), "standard", 0, splits, tmp_path) == first
    # A run made when the lists were part of the hash is reused under the same lists...
    old = StudentConfig(model=model, modes=["standard"], seeds=[0, 1], alpha=0.5, train=train)
    record = json.loads((folder / "result.json").read_text())
    legacy = _legacy_hash(old, "standard", 0)
    (folder / "result.json").write_text(json.dumps({**record, "config_hash": legacy}))
    assert train_and_evaluate(CFG, old, "standard", 0, splits, tmp_path)["config_hash"] == legacy
    # ...and a single-loss run made at alpha 0.5 (the default then) under a config now at 0.9
    (folder / "result.json").write_text(json.dumps({**record, "config_hash": _legacy_hash(old, "standard", 0)}))
    assert train_and_evaluate(CFG, dataclasses.replace(old, alpha=0.9), "standard", 0, splits, tmp_path)
    # ...and a real change is still refused.
    with pytest.raises(ConfigError, match="student run standard seed 0 made under another config"):
        train_and_evaluate(CFG, dataclasses.replace(old, loss_average="sequence"), "standard", 0, splits, tmp_path)


def test_alpha_by_mode_gives_one_mode_its_alpha(tiny_model_dirs, tmp_path):
    model, train = ModelConfig(name=str(tiny_model_dirs["qwen2"])), TrainConfig(max_steps=2, progress_bar=False)
    with pytest.raises(ConfigError, match="'student.alpha_by_mode': unknown training mode 'salency'"):
        StudentConfig(model=model, alpha_by_mode={"salency": 0.9})
    with pytest.raises(ConfigError, match=r"'student.alpha_by_mode.saliency': 1.5 is not in \(0, 1\]"):
        StudentConfig(model=model, alpha_by_mode={"saliency": 1.5})
    splits = {"train": _examples(6), "test": _examples(4)}
    plain = train_and_evaluate(CFG, StudentConfig(model=model, modes=["llm-rationale"], alpha=0.9, train=train),
                               "llm-rationale", 0, splits, tmp_path / "a")
    by_mode = StudentConfig(model=model, modes=["llm-rationale"], alpha=0.5, alpha_by_mode={"llm-rationale": 0.9},
                            train=train)
    assert by_mode.for_mode("llm-rationale").alpha == 0.9 and by_mode.for_mode("saliency").alpha == 0.5
    # the same run however its alpha was given: reused in the same folder, the same losses in a new one
    assert train_and_evaluate(CFG, by_mode, "llm-rationale", 0, splits, tmp_path / "a") == plain
    fresh = train_and_evaluate(CFG, by_mode, "llm-rationale", 0, splits, tmp_path / "b")
    assert (fresh["loss_first"], fresh["loss_last"]) == (plain["loss_first"], plain["loss_last"])
    other = train_and_evaluate(CFG, dataclasses.replace(by_mode, alpha_by_mode={}), "llm-rationale", 0, splits,
                               tmp_path / "c")
    assert other["loss_first"] != plain["loss_first"]  # alpha 0.5 weighs the two losses otherwise


def _legacy_hash(cfg, mode, seed):
    """How a student run was hashed before the lists of modes and seeds left its identity."""
    from saliency_distill.config import config_hash, to_dict
    from saliency_distill.training.sft import identity as train_identity

    student = {**to_dict(cfg), "train": train_identity(cfg.train), "keep_models": None}
    student.pop("alpha_by_mode")  # added after that: never part of a run's hash
    student["early_stopping"].pop("min_fraction")
    student.pop("logit_kd")
    student.pop("temperature")
    student.pop("mask_fraction")  # added after that (consistency modes only)
    student["eval"].pop("bf16")  # added after that (rounding only: never part of a run's hash)
    return config_hash({"task": to_dict(CFG), "student": student, "mode": mode, "seed": seed, "identity": {}})


def test_prompt_longer_than_the_students_context_is_an_error(tiny_model_dirs, tmp_path):
    # The tiny models have a 256-token context.
    long = Example(id="long-7", fields={"question": "the quick brown fox " * 80}, label="increases",
                   choices=("increases", "decreases"))
    cfg = StudentConfig(model=ModelConfig(name=str(tiny_model_dirs["llama"])), modes=["standard"],
                        train=TrainConfig(max_steps=1, progress_bar=False))
    with pytest.raises(DataError, match=r"example long-7: \d+ tokens is longer than max_length=256"):
        train_and_evaluate(CFG, cfg, "standard", 0, {"train": [long], "test": [long]}, tmp_path)


# ---- control modes and sanity of the multi-task trainer ------------------------------------


def test_random_words_are_seeded_content_words():
    from saliency_distill.rationale import RationaleConfig, random_rationales

    exs = [Example(id=f"e{i}", fields={"question": "Eric adds more long resistors to the series circuit, "
                                                   f"number {i}, so the resistance"}, label="increases",
                   choices=("increases", "decreases")) for i in range(4)]
    cfg = RationaleConfig(k=3)
    first = random_rationales(TASK, CFG, exs, cfg, seed=0)
    assert first == random_rationales(TASK, CFG, exs[::-1], cfg, seed=0)  # per example, order-free
    assert first != random_rationales(TASK, CFG, exs, cfg, seed=1)
    for ex in exs:
        words = first[ex.id].split()
        text = TASK.render(ex, CFG).text
        assert len(words) == 3 and all(w in text for w in words)
        assert not {"the", "to", "so"} & set(words) and "Question" not in words  # no stopwords, no template
    assert len({first[ex.id] for ex in exs}) > 1


def test_control_modes_build_pairs():
    exs = _examples(2)
    rnd = build_pairs("random-words", TASK, CFG, exs, rationales={"e0": "Eric adds", "e1": "resistance"})
    assert rnd.targets == ["increases", "Eric adds", "increases", "resistance"] and rnd.multitask
    human = [Example(id="h0", fields={"question": "q"}, label="increases", choices=("increases", "decreases"),
                     human_rationale="more resistors, more resistance"), *exs]
    hum = build_pairs("human-rationale", TASK, CFG, human)
    assert hum.targets == ["increases", "more resistors, more resistance", "increases", "increases"]
    with pytest.raises(DataError, match="mode human-rationale needs human rationales"):
        build_pairs("human-rationale", TASK, CFG, exs)
    with pytest.raises(DataError, match="example e0: no rationale drawn"):
        build_pairs("random-words", TASK, CFG, exs, rationales={})


def _trained(lm_dir, tmp, tasks, alpha, pairs, ids):
    lm = load_model(str(lm_dir))
    metrics = train_supervised(lm, pairs, TrainConfig(max_steps=4, batch_size=2, learning_rate=1e-3, logging_steps=1,
                                                      progress_bar=False, save_minutes=None),
                               tmp, ids=ids, tasks=tasks, alpha=alpha)
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}, metrics


def test_alpha_one_reproduces_the_standard_student(tiny_model_dirs, tmp_path):
    exs = _examples(6)
    sal = build_pairs("saliency", TASK, CFG, exs, rationales={f"e{i}": f"adds {i} resistors" for i in range(6)})
    std = build_pairs("standard", TASK, CFG, exs)
    pairs = list(zip(sal.prompts, sal.targets))
    standard, m_std = _trained(tiny_model_dirs["llama"], tmp_path / "std", None, 0.5,
                               list(zip(std.prompts, std.targets)), std.ids)
    alpha1, m_one = _trained(tiny_model_dirs["llama"], tmp_path / "one", sal.tasks, 1.0, pairs, sal.ids)
    half, _ = _trained(tiny_model_dirs["llama"], tmp_path / "half", sal.tasks, 0.5, pairs, sal.ids)
    # The predict rows share their prompt with explain tails, so only float rounding differs.
    assert m_one["loss_first"] == pytest.approx(m_std["loss_first"], rel=1e-5)
    assert m_one["loss_last"] == pytest.approx(m_std["loss_last"], rel=1e-4)
    for name in standard:
        torch.testing.assert_close(alpha1[name], standard[name], rtol=1e-4, atol=1e-6, msg=name)
    assert any(not torch.allclose(half[n], standard[n], atol=1e-4) for n in standard)  # alpha matters


def test_an_empty_explain_set_is_exactly_the_standard_student(tiny_model_dirs, tmp_path):
    std = build_pairs("standard", TASK, CFG, _examples(6))
    pairs = list(zip(std.prompts, std.targets))
    standard, _ = _trained(tiny_model_dirs["qwen2"], tmp_path / "std", None, 0.5, pairs, std.ids)
    predict_only, _ = _trained(tiny_model_dirs["qwen2"], tmp_path / "mt", [PREDICT] * 6, 0.5, pairs, std.ids)
    for name in standard:
        assert torch.equal(predict_only[name], standard[name]), name


# ---- early stopping on validation -----------------------------------------------------------


def test_early_stopping_keeps_the_best_validation_weights(tiny_model_dirs, tmp_path):
    from transformers import TrainerCallback

    from saliency_distill.student.early_stop import ValidationStopper, load_best

    scores = iter([0.2, 0.6, 0.4, 0.5, 0.1, 0.9])  # best at the 2nd evaluation, then 3 worse ones: stop
    stopper = ValidationStopper(lambda: next(scores), evaluations=6, patience=3, folder=tmp_path / "val")
    weights = {}

    class Keep(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            weights[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    lm = load_model(str(tiny_model_dirs["llama"]))
    std = build_pairs("standard", TASK, CFG, _examples(6))
    metrics = train_supervised(lm, list(zip(std.prompts, std.targets)),
                               TrainConfig(max_steps=12, batch_size=2, learning_rate=1e-2, progress_bar=False,
                                           save_minutes=None), tmp_path / "run", ids=std.ids,
                               extra_callbacks=[stopper, Keep()])
    assert [h["step"] for h in stopper.history] == [2, 4, 6, 8, 10]  # stopped after the 5th evaluation
    assert metrics["global_step"] == 10
    record = load_best(lm.model, tmp_path / "val")
    assert record["best"] == {"step": 4, "accuracy": 0.6}
    for name, p in lm.model.named_parameters():
        torch.testing.assert_close(p.detach(), weights[4][name], rtol=0, atol=0)
    assert not torch.equal(weights[4]["model.norm.weight"], weights[10]["model.norm.weight"])


def test_student_with_early_stopping_tests_the_best_weights(tiny_model_dirs, tmp_path):
    from saliency_distill.student.stage import EarlyStopConfig

    splits = {"train": _examples(6), "validation": _examples(3), "test": _examples(4)}
    cfg = StudentConfig(model=ModelConfig(name=str(tiny_model_dirs["qwen2"])), modes=["standard"],
                        train=TrainConfig(max_steps=4, batch_size=2, progress_bar=False),
                        early_stopping=EarlyStopConfig(enabled=True, evaluations=2, patience=1))
    rec = train_and_evaluate(CFG, cfg, "standard", 0, splits, tmp_path)
    steps = [h["step"] for h in rec["validation"]["history"]]
    assert steps[0] == 2 and rec["validation"]["best"]["step"] in steps
    assert not (tmp_path / "students" / "standard" / "seed0" / "validation" / "best.safetensors").exists()
    with pytest.raises(ConfigError, match="no validation examples"):
        train_and_evaluate(CFG, cfg, "standard", 1, {"train": splits["train"], "test": splits["test"]}, tmp_path)


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_is_tested_with_its_best_validation_weights(tiny_model_dirs, tmp_path, monkeypatch, mode):
    # The "accuracy" is a fingerprint of the weights (a tiny random model answers nothing right), so
    # the test split's score equals the best validation score only if the best weights are tested.
    from saliency_distill.student import stage
    from saliency_distill.student.stage import EarlyStopConfig

    real = stage.evaluate_student
    ranked = []  # choice scoring per evaluation: validation picks by greedy accuracy and skips it

    def fingerprint(lm, *args, **kwargs):
        ranked.append(args[3].choice_scoring)
        rows, metrics = real(lm, *args, **kwargs)
        norm = dict(lm.model.named_parameters())["model.norm.weight"]
        return rows, {**metrics, "accuracy": float(norm.double().sum()) % 1.0}

    monkeypatch.setattr(stage, "evaluate_student", fingerprint)
    exs = [dataclasses.replace(ex, human_rationale=f"more resistors raise it {i}") for i, ex in enumerate(_examples(10))]
    from saliency_distill.data.pool import unlabeled

    pool = [unlabeled(dataclasses.replace(ex, id=f"pool-{i}")) for i, ex in enumerate(exs[:3])]
    splits = {"train": exs[:6], "validation": exs[6:], "test": exs[6:], "pool": pool}
    answers = {ex.id: {"answer": "decreases", "logprobs": [-1.5, -0.2]} for ex in exs + pool}  # teacher, soft, pool
    cfg = StudentConfig(model=ModelConfig(name=str(tiny_model_dirs["llama"])), modes=[mode],
                        train=TrainConfig(max_steps=8, batch_size=2, learning_rate=2e-2, progress_bar=False),
                        early_stopping=EarlyStopConfig(enabled=True, evaluations=4, patience=4))
    words = {ex.id: f"adds {i} resistors" for i, ex in enumerate(exs + pool)} \
        if MODES[mode].explain in ("saliency", "random") else None
    masked = {ex.id: ex.fields["question"].split(" ", 1)[-1] for ex in exs + pool} if MODES[mode].consistency else None
    rec = train_and_evaluate(CFG, cfg, mode, 0, splits, tmp_path, teacher_answers=answers, rationales=words,
                             masked=masked)
    history, best = rec["validation"]["history"], rec["validation"]["best"]
    assert [h["step"] for h in history] == [2, 4, 6, 8] and len({h["accuracy"] for h in history}) == 4
    assert best == max(history, key=lambda h: h["accuracy"])
    assert rec["accuracy"] == best["accuracy"]
    assert ranked == [False] * 4 + [True] and "ranked_accuracy" in rec


def test_partly_missing_dataset_rationales_warn_or_fail(caplog):
    exs = _examples(3)
    exs[1] = Example(id="e1", fields=exs[1].fields, label="increases", choices=exs[1].choices, llm_rationale=None)
    with caplog.at_level("WARNING"):
        pairs = build_pairs("llm-rationale", TASK, CFG, exs)
    assert pairs.tasks == [PREDICT, EXPLAIN, PREDICT, PREDICT, EXPLAIN]
    assert "1 of 3 train examples have no llm rationale" in caplog.text
    with pytest.raises(DataError, match=r"example e1: no llm rationale \(1 of 3 .*require_rationales"):
        build_pairs("llm-rationale", TASK, CFG, exs, require_rationales=True)


@pytest.mark.parametrize("min_fraction, stopped_at, best_step", [(0.0, 8, 2), (0.9, None, 12)])
def test_early_stopping_waits_for_min_fraction_of_the_steps(tmp_path, min_fraction, stopped_at, best_step):
    from types import SimpleNamespace

    from saliency_distill.student.early_stop import ValidationStopper

    # a student that sits at chance for a while, then learns (as SmolLM2 on e-SNLI does)
    scores = iter([0.3, 0.3, 0.3, 0.3, 0.8, 0.9])
    stopper = ValidationStopper(lambda: next(scores), evaluations=6, patience=3, folder=tmp_path / "val",
                                min_fraction=min_fraction)
    model = torch.nn.Linear(2, 2)
    state = SimpleNamespace(global_step=0, max_steps=12, is_world_process_zero=True)
    control = SimpleNamespace(should_training_stop=False)
    stopper.on_train_begin(None, state, control)
    stopped = None
    for step in range(1, 13):
        state.global_step = step
        stopper.on_step_end(None, state, control, model=model)
        if control.should_training_stop:
            stopped = step
            break
    assert stopped == stopped_at and stopper.best["step"] == best_step


def test_the_explanation_after_the_label_is_one_sequence_and_alpha_1_is_the_label_loss(tiny_model_dirs, tmp_path):
    exs = _examples(4)
    words = {ex.id: f"adds {i} resistors" for i, ex in enumerate(exs)}
    pairs = build_pairs("saliency-after", TASK, CFG, exs[:1], rationales=words)
    text = TASK.render(exs[0], CFG).text
    assert pairs.prompts == [f"{text}\npredict:", f"{text}\npredict: increases\nexplain:"]
    assert pairs.targets == ["increases", "adds 0 resistors"] and pairs.tasks == [PREDICT, EXPLAIN]
    # alpha 1 weighs the explanation 0: the loss is standard fine-tuning's, step for step
    splits = {"train": exs, "test": exs[:2]}
    cfg = StudentConfig(model=ModelConfig(name=str(tiny_model_dirs["llama"])), alpha=1.0,
                        train=TrainConfig(max_steps=2, batch_size=2, learning_rate=1e-2, progress_bar=False))
    one = train_and_evaluate(CFG, cfg, "saliency-after", 0, splits, tmp_path / "a", rationales=words)
    plain = train_and_evaluate(CFG, cfg, "standard", 0, splits, tmp_path / "b")
    assert one["train_sequences"] == 2 * plain["train_sequences"]
    assert one["loss_first"] == pytest.approx(plain["loss_first"], rel=1e-5)
    assert one["loss_last"] == pytest.approx(plain["loss_last"], rel=1e-5)
