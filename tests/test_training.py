"""Supervised fine-tuning: label masking, padding, config checks, and short runs on tiny models."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from saliency_distill.config import build
from saliency_distill.data import TaskConfig, get_task
from saliency_distill.data.example import make_example
from saliency_distill.errors import ConfigError, DataError
from saliency_distill.models import load_model
from saliency_distill.models.tokens import answer_ids
from saliency_distill.teacher import finetune
from saliency_distill.teacher.prompt import TeacherPrompter
from saliency_distill.training import (
    IGNORE_INDEX,
    TrainConfig,
    encode_pair,
    encode_pairs,
    pad_batch,
    train_supervised,
    trained_fingerprint,
)
from saliency_distill.training.config import identity

PAIRS = [
    ("Question: Where would you put a plate after washing it?\nAnswer:", "cupboard"),
    ("Premise: Two women are embracing.\nHypothesis: Two women hug.\nAnswer:", "entailment"),
    ("Luke scored 84 points after playing 2 rounds.\nEquation:", "( 84.0 / 2.0 )"),
    ("The resistance increases when Eric adds more resistors.\nAnswer:", "increases"),
] * 2
QUICK = dict(batch_size=8, learning_rate=1e-2, logging_steps=1, save_steps=1000, progress_bar=False)


def _mean_loss(lm, pairs) -> float:
    """Mean target-token loss over ``pairs`` in one padded batch, without gradients."""
    batch = pad_batch([encode_pair(lm, p, t) for p, t in pairs], lm.tokenizer.pad_token_id)
    with torch.no_grad():
        return lm.model(**batch).loss.item()


def _params(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# ---- features -------------------------------------------------------------------------------


def test_causal_labels_cover_the_target_only_and_match_scoring(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    prompt, target = PAIRS[0]
    feat = encode_pair(lm, prompt, target)
    prompt_ids = lm.tokenizer(prompt)["input_ids"]
    target_ids = lm.tokenizer(" " + target, add_special_tokens=False)["input_ids"]
    eos = lm.tokenizer.eos_token_id
    assert feat["input_ids"] == prompt_ids + target_ids + [eos]
    assert feat["labels"] == [IGNORE_INDEX] * len(prompt_ids) + target_ids + [eos]
    # The trained token sequence is the one teacher scoring reads (plus eos).
    assert feat["labels"][len(prompt_ids):-1] == answer_ids(lm, target)


def test_seq2seq_labels_are_the_target_and_eos(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["t5"]))
    prompt, target = PAIRS[1]
    feat = encode_pair(lm, prompt, target)
    assert feat["input_ids"] == lm.tokenizer(prompt)["input_ids"]
    assert feat["labels"] == answer_ids(lm, target)
    assert feat["labels"][-1] == lm.tokenizer.eos_token_id


def test_too_long_is_an_error_naming_the_example(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    with pytest.raises(DataError, match="longer than max_length=5"):
        encode_pair(lm, *PAIRS[0], max_length=5)
    with pytest.raises(DataError, match="^example b: .*max_length=5"):
        encode_pairs(lm, [("a", "b"), PAIRS[0]], max_length=5, ids=["a", "b"])


def test_pad_batch_pads_right_with_mask_and_ignored_labels():
    feats = [
        {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]},
        {"input_ids": [8], "labels": [9, 10]},  # seq2seq-like: labels longer than inputs
    ]
    batch = pad_batch(feats, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [9, 10, IGNORE_INDEX]]
    assert all(t.dtype == torch.long for t in batch.values())


# ---- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [("epochs", 0), ("max_steps", 0), ("learning_rate", -1.0), ("batch_size", 0), ("warmup_ratio", 1.0),
     ("lora_dropout", -0.1), ("lora_targets", []), ("max_length", 0)],
)
def test_bad_train_config_names_the_key(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        build(TrainConfig, {key: value})


def test_keys_added_later_leave_old_identities_alone():
    assert TrainConfig().optim == "adamw_torch_fused"
    # fused and unfused AdamW are one update rule: runs made with either keep their identity
    for optim in ("adamw_torch", "adamw_torch_fused"):
        assert "optim" not in identity(TrainConfig(optim=optim))
    assert identity(TrainConfig(optim="sgd"))["optim"] == "sgd"
    # eager and sdpa attention are one computation in two kernels
    for attention in ("auto", "model", "eager", "sdpa"):
        assert "attention" not in identity(TrainConfig(attention=attention))
    with pytest.raises(ConfigError, match="'attention': 'flash'"):
        TrainConfig(attention="flash")


# ---- training runs --------------------------------------------------------------------------


def test_fused_adamw_trains_the_same_weights_as_adamw(tiny_model_dirs, tmp_path):
    trained = []
    for optim in ("adamw_torch", "adamw_torch_fused"):
        lm = load_model(str(tiny_model_dirs["llama"]))
        train_supervised(lm, PAIRS, TrainConfig(max_steps=5, optim=optim, **QUICK), tmp_path / optim)
        trained.append(dict(lm.model.named_parameters()))
    for name, p in trained[0].items():
        torch.testing.assert_close(trained[1][name], p, rtol=1e-4, atol=1e-5)


def test_auto_attention_is_eager_for_short_batches_on_cpu_trains_like_sdpa_and_is_restored(tiny_model_dirs, tmp_path,
                                                                                          monkeypatch):
    from saliency_distill.training.trainer import AttentionSwitch, attention_switch

    lm = load_model(str(tiny_model_dirs["llama"]))
    assert lm.model.config._attn_implementation == "sdpa"
    for choice, length, wanted in [("auto", 128, "eager"), ("auto", 129, "sdpa"), ("sdpa", 10, "sdpa"),
                                   ("eager", 900, "eager"), ("model", 10, "sdpa")]:
        with attention_switch(lm.model, choice) as switch:
            switch.set_for(length)
            assert lm.model.config._attn_implementation == wanted, (choice, length)
            switch.set_for(129 if length <= 128 else 10)  # the next batch may pick the other kernel
            assert lm.model.config._attn_implementation == switch.kernel(129 if length <= 128 else 10)
        assert lm.model.config._attn_implementation == "sdpa"
    t5 = load_model(str(tiny_model_dirs["t5"]))
    with attention_switch(t5.model, "auto") as switch:
        assert switch.kernel(10) is None  # an encoder-decoder keeps its own
    used = []
    use = AttentionSwitch.use
    monkeypatch.setattr(AttentionSwitch, "use", lambda self, kernel: (used.append(kernel), use(self, kernel)))
    trained = []
    for attention in ("sdpa", "auto"):  # the tiny model's rows are short: auto is eager
        lm = load_model(str(tiny_model_dirs["llama"]))
        train_supervised(lm, PAIRS, TrainConfig(max_steps=4, attention=attention, **QUICK), tmp_path / attention)
        assert lm.model.config._attn_implementation == "sdpa"
        trained.append(_params(lm.model))
    assert used == ["sdpa"] * 5 + ["eager"] * 4 + ["sdpa"], used  # a kernel per step, then the one loaded
    before = _params(load_model(str(tiny_model_dirs["llama"])).model)
    for name, p in trained[0].items():
        torch.testing.assert_close(trained[1][name], p, rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(p, before[name]) for name, p in trained[0].items())  # training moved them


def test_the_training_bar_counts_examples_with_a_rate(tiny_model_dirs, tmp_path, capsys):
    lm = load_model(str(tiny_model_dirs["llama"]))
    train_supervised(lm, PAIRS, TrainConfig(max_steps=3, **{**QUICK, "batch_size": 2, "progress_bar": True}), tmp_path)
    err = capsys.readouterr().err
    assert "training: 100%" in err and "6/6 [" in err and "ex/s]" in err, err  # 3 steps x 2 examples


def test_an_unknown_optimizer_is_a_config_error(tiny_model_dirs, tmp_path):
    lm = load_model(str(tiny_model_dirs["llama"]))
    with pytest.raises(ConfigError, match="training arguments: .*no_such_optimizer"):
        train_supervised(lm, PAIRS, TrainConfig(max_steps=1, optim="no_such_optimizer", **QUICK), tmp_path)


def test_full_finetune_lowers_the_loss_and_saves_the_model(tiny_model_dirs, tmp_path):
    lm = load_model(str(tiny_model_dirs["llama"]))
    before_params, before_loss = _params(lm.model), _mean_loss(lm, PAIRS)
    metrics = train_supervised(lm, PAIRS, TrainConfig(max_steps=30, **QUICK), tmp_path)

    after_loss = _mean_loss(lm, PAIRS)
    assert after_loss < 0.5 * before_loss
    assert metrics["global_step"] == 30 and metrics["loss_last"] < metrics["loss_first"]
    assert any(not torch.equal(before_params[n], p) for n, p in lm.model.named_parameters())
    assert not lm.model.training and all(p.requires_grad for p in lm.model.parameters())
    assert lm.model.config.use_cache is True
    assert json.loads((tmp_path / "train_metrics.json").read_text())["fingerprint"] == metrics["fingerprint"]
    saved = load_model(str(tmp_path / "model"))
    for name, p in saved.model.named_parameters():
        torch.testing.assert_close(p, dict(lm.model.named_parameters())[name], rtol=0, atol=0)


def test_lora_is_merged_into_a_plain_model(tiny_model_dirs, tmp_path):
    lm = load_model(str(tiny_model_dirs["llama"]))
    model_class, before = type(lm.model), _params(lm.model)
    train_supervised(lm, PAIRS, TrainConfig(max_steps=5, lora=True, lora_r=4, **QUICK), tmp_path)

    assert type(lm.model) is model_class and all(p.requires_grad for p in lm.model.parameters())
    saved = load_model(str(tmp_path / "model"))
    names = dict(saved.model.named_parameters())
    assert set(names) == set(before)  # no adapter weights left over
    changed = {n for n, p in names.items() if not torch.equal(p, before[n])}
    assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in changed)


def test_a_longer_run_resumes_from_the_last_checkpoint(tiny_model_dirs, tmp_path):
    lm = load_model(str(tiny_model_dirs["llama"]))
    cfg = dict(QUICK, save_steps=2, keep_checkpoints=True)
    first = train_supervised(lm, PAIRS, TrainConfig(max_steps=4, **cfg), tmp_path)
    assert first["resumed_from"] is None and (tmp_path / "checkpoints" / "checkpoint-4").is_dir()

    second = train_supervised(lm, PAIRS, TrainConfig(max_steps=6, **cfg), tmp_path)
    assert second["resumed_from"] == "checkpoint-4" and second["global_step"] == 6
    assert second["loss_first"] == first["loss_first"]  # the log history continues the first run's
    with pytest.raises(ConfigError, match="checkpoints made under another config"):
        train_supervised(lm, PAIRS[:2], TrainConfig(max_steps=8, **cfg), tmp_path)


def test_an_interrupted_run_resumes_and_cleans_up(tiny_model_dirs, tmp_path):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt  # as if the job were killed after step 3

    lm = load_model(str(tiny_model_dirs["llama"]))
    cfg = TrainConfig(max_steps=6, **dict(QUICK, save_steps=2))
    with pytest.raises(KeyboardInterrupt):
        train_supervised(lm, PAIRS, cfg, tmp_path, extra_callbacks=[Kill()])
    assert (tmp_path / "checkpoints" / "checkpoint-2").is_dir() and not (tmp_path / "model").exists()
    lm = load_model(str(tiny_model_dirs["llama"]))
    done = train_supervised(lm, PAIRS, cfg, tmp_path)
    assert done["resumed_from"] == "checkpoint-2" and done["global_step"] == 6
    assert (tmp_path / "model" / "config.json").is_file()
    assert not (tmp_path / "checkpoints").exists()  # removed once the final model is saved


def test_a_resumed_run_reports_the_wall_time_of_every_sitting(tiny_model_dirs, tmp_path):
    import time

    from transformers import TrainerCallback

    class SlowThenKill(TrainerCallback):  # the first sitting: 2 slow steps, checkpoint-2, killed after step 3
        def on_step_end(self, args, state, control, **kw):
            if state.global_step <= 2:
                time.sleep(0.6)
            if state.global_step == 3:
                raise KeyboardInterrupt

    cfg = TrainConfig(max_steps=4, **dict(QUICK, save_steps=2))
    with pytest.raises(KeyboardInterrupt):
        train_supervised(load_model(str(tiny_model_dirs["llama"])), PAIRS, cfg, tmp_path, extra_callbacks=[SlowThenKill()])
    before = json.loads((tmp_path / "checkpoints" / "checkpoint-2" / "wall_seconds.json").read_text())["wall_seconds"]
    assert before >= 1.2  # the two slow steps are in it
    start = time.perf_counter()
    done = train_supervised(load_model(str(tiny_model_dirs["llama"])), PAIRS, cfg, tmp_path)
    second = time.perf_counter() - start
    assert done["resumed_from"] == "checkpoint-2"
    # the first sitting's time up to its checkpoint plus at most the second sitting's
    assert before < done["wall_seconds"] <= before + second


def test_a_run_killed_after_its_last_checkpoint_trains_no_extra_step(tiny_model_dirs, tmp_path):
    # 12 pairs in batches of 8: 2 steps per epoch, so step 3 is mid-epoch. Killed after the
    # checkpoint of its last step and before the model was saved, the run must come back with the
    # weights of that checkpoint and 3 steps (transformers alone would train a 4th).
    from safetensors.torch import load_file

    pairs = (PAIRS * 2)[:12]
    cfg = TrainConfig(max_steps=3, **dict(QUICK, save_steps=3, keep_checkpoints=True))
    first = train_supervised(load_model(str(tiny_model_dirs["llama"])), pairs, cfg, tmp_path / "a")
    want = load_file(tmp_path / "a" / "model" / "model.safetensors")
    for name in ("model", "train_metrics.json"):  # as if killed right after checkpoint-3
        path = tmp_path / "a" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    again = train_supervised(load_model(str(tiny_model_dirs["llama"])), pairs, cfg, tmp_path / "a")
    assert first["global_step"] == again["global_step"] == 3 and again["resumed_from"] == "checkpoint-3"
    assert again["loss_last"] == first["loss_last"]
    got = load_file(tmp_path / "a" / "model" / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_resumed_run_logs_the_same_losses_as_an_uninterrupted_one(tiny_model_dirs, tmp_path):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    # logs every 4 steps, checkpoints every 2: the resumed run's first window would start at step 2
    cfg = TrainConfig(max_steps=8, **dict(QUICK, logging_steps=4, save_steps=2))
    whole = train_supervised(load_model(str(tiny_model_dirs["llama"])), PAIRS, cfg, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train_supervised(load_model(str(tiny_model_dirs["llama"])), PAIRS, cfg, tmp_path / "cut", extra_callbacks=[Kill()])
    resumed = train_supervised(load_model(str(tiny_model_dirs["llama"])), PAIRS, cfg, tmp_path / "cut")
    assert resumed["resumed_from"] == "checkpoint-2"
    for key in ("loss_first", "loss_last", "train_loss_mean"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6), key


def test_t5_trains(tiny_model_dirs, tmp_path):
    lm = load_model(str(tiny_model_dirs["t5"]))
    before = _mean_loss(lm, PAIRS)
    metrics = train_supervised(lm, PAIRS, TrainConfig(max_steps=5, **QUICK), tmp_path)
    assert metrics["global_step"] == 5 and _mean_loss(lm, PAIRS) < before
    assert load_model(str(tmp_path / "model")).is_seq2seq


def test_finetune_teacher_trains_once_then_reuses_the_stage(tiny_model_dirs, tmp_path, monkeypatch):
    lm = load_model(str(tiny_model_dirs["qwen2"]))
    task, task_cfg = get_task("quartz"), TaskConfig()
    examples = [
        make_example("test", f"q{i}", {"question": q}, label, choices=["more", "less"])
        for i, (q, label) in enumerate([("More resistors, more resistance?", "more"), ("Less heat?", "less")])
    ]
    cfg = TrainConfig(max_steps=2, **QUICK)
    prompter = TeacherPrompter(task, task_cfg)
    tuned = finetune.finetune_teacher(lm, prompter, examples, cfg, tmp_path)
    assert tuned.kind == "causal" and tuned.path == str(tmp_path / "model")
    assert trained_fingerprint(tmp_path / "model") is not None

    def no_training(*args, **kwargs):
        raise AssertionError("the finished stage was trained again")

    monkeypatch.setattr(finetune, "train_supervised", no_training)
    again = finetune.finetune_teacher(lm, prompter, examples, cfg, tmp_path)
    assert again.path == tuned.path
    with pytest.raises(ConfigError, match="fine-tuned teacher made under another config"):
        finetune.finetune_teacher(lm, prompter, examples, TrainConfig(max_steps=3, **QUICK), tmp_path)
    monkeypatch.undo()  # train again: --overwrite replaces the model made under the other config
    before = trained_fingerprint(tmp_path / "model")
    finetune.finetune_teacher(lm, prompter, examples, TrainConfig(max_steps=3, **QUICK), tmp_path, overwrite=True)
    assert trained_fingerprint(tmp_path / "model") not in (None, before)


def test_a_half_deleted_checkpoint_is_not_resumed(tmp_path):
    from saliency_distill.training.checkpoints import last_checkpoint, remove_checkpoints

    good, torn = tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"
    for path in (good, torn):
        path.mkdir()
        (path / "trainer_state.json").write_text("{}")
    (good / "model.safetensors").write_bytes(b"w")
    (good / "optimizer.pt").write_bytes(b"o")
    (torn / "optimizer.pt").write_bytes(b"o")  # its weights were deleted before the kill
    assert last_checkpoint(tmp_path) == good
    remove_checkpoints(tmp_path)
    assert not tmp_path.exists() and not list(tmp_path.parent.glob(f".{tmp_path.name}.deleting"))


def test_malloc_keeps_freed_memory_unless_told_not_to(monkeypatch):
    import ctypes.util
    import sys

    from saliency_distill.allocator import ENV, hold_freed_memory

    monkeypatch.setenv(ENV, "system")
    assert hold_freed_memory() is False
    monkeypatch.delenv(ENV)
    glibc = sys.platform.startswith("linux") and "musl" not in (ctypes.util.find_library("c") or "")
    assert hold_freed_memory() is glibc


def test_frozen_embeddings_stay_put_while_the_rest_trains_and_thaw_afterwards(tiny_model_dirs, tmp_path):
    assert "freeze_embeddings" not in identity(TrainConfig())  # runs made before the key stay valid
    assert identity(TrainConfig(freeze_embeddings=True))["freeze_embeddings"] is True
    lm = load_model(str(tiny_model_dirs["llama"]))
    before = _params(lm.model)
    train_supervised(lm, PAIRS, TrainConfig(max_steps=3, freeze_embeddings=True, **QUICK), tmp_path)
    after = _params(lm.model)
    frozen = [n for n in before if "embed_tokens" in n or ("lm_head" in n and lm.model.config.tie_word_embeddings)]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert any(not torch.equal(before[n], after[n]) for n in before if n not in frozen)
    assert all(p.requires_grad for p in lm.model.parameters())  # as before training
    lm = load_model(str(tiny_model_dirs["llama"]))
    train_supervised(lm, PAIRS, TrainConfig(max_steps=3, **QUICK), tmp_path / "trainable")
    assert not torch.equal(before[frozen[0]], _params(lm.model)[frozen[0]])  # they would have moved
