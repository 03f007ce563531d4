"""Batch layouts compute the same thing: a shared prompt, packed rows and target-only logits give
the losses and gradients of separate sequences with full logits; gradient accumulation gives
the gradients of one big batch; a training killed with SIGKILL resumes to the same weights."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from saliency_distill.models import load_model
from saliency_distill.training import TrainConfig, encode_pair, train_supervised
from saliency_distill.training.features import IGNORE_INDEX
from saliency_distill.training.losses import EXPLAIN, PREDICT, target_weights, weighted_loss
from saliency_distill.training.packing import causal_batch, make_blocks, seq2seq_batch
from saliency_distill.training.trainer import logits_at_targets

PROMPTS = [
    "Question: Where would you put a plate after washing it?\nAnswer Choices:\n(a) cupboard\n(b) table\nAnswer:",
    "Premise: Two women are embracing.\nHypothesis: Two women hug.\nAnswer:",
    "Luke scored 84 points after playing 2 rounds.",
]
LABELS = ["cupboard", "entailment", "( 84.0 / 2.0 )"]
WHY = ["plate washing cupboard", "women embracing hug", "84 points 2 rounds"]
# fp32 on a tiny model: different layouts reorder sums, nothing more.
TOL = dict(rtol=1e-5, atol=1e-6)


def _items(lm, explain=(True, True, True)):
    """Training items: each example's "predict" part and, where ``explain``, its "explain" part."""
    items = []
    for prompt, label, why, has in zip(PROMPTS, LABELS, WHY, explain):
        parts = [dict(encode_pair(lm, prompt + "\npredict:", label), task=[PREDICT])]
        if has:
            parts.append(dict(encode_pair(lm, prompt + "\nexplain:", why), task=[EXPLAIN]))
        items.append({"input_ids": parts[0]["input_ids"], "parts": parts})
    return items


def _loss(model, batch, alpha, average="token", only_targets=True):
    weights = target_weights([batch["target_task"]], [batch["target_seq"]], alpha, average)[0]
    logits, _ = logits_at_targets(model, batch, only_targets=only_targets)
    return weighted_loss(logits, batch["target_ids"], weights)


def _loss_and_grads(model, batch, alpha, **kw):
    model.zero_grad()
    loss = _loss(model, batch, alpha, **kw)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _reference_task_losses(model, items):
    """Token-mean loss of each task from the model itself, one unpadded sequence at a time."""
    sums, counts = {PREDICT: 0.0, EXPLAIN: 0.0}, {PREDICT: 0, EXPLAIN: 0}
    for item in items:
        for part in item["parts"]:
            ids, labels = torch.tensor([part["input_ids"]]), torch.tensor([part["labels"]])
            n = int((labels[0, 1:] != IGNORE_INDEX).sum())
            sums[part["task"][0]] += model(input_ids=ids, labels=labels).loss * n
            counts[part["task"][0]] += n
    return {t: sums[t] / counts[t] for t in sums}


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_shared_prompt_equals_separate_sequences(tiny_model_dirs, kind):
    lm = load_model(str(tiny_model_dirs[kind]))
    model, pad = lm.model.float().train(), lm.tokenizer.pad_token_id
    items = _items(lm)
    shared = causal_batch(items, pad, share_prompt=True)
    separate = causal_batch(items, pad, share_prompt=False)
    assert shared["input_ids"].shape[0] == 3 and separate["input_ids"].shape[0] == 6
    assert shared["attention_mask"].dim() == 4 and separate["attention_mask"].dim() == 2
    assert shared["input_ids"].numel() < separate["input_ids"].numel()

    ref = _reference_task_losses(model, items)
    for alpha, task in ((1.0, PREDICT), (1e-12, EXPLAIN)):  # each task's loss alone
        torch.testing.assert_close(_loss(model, shared, alpha), ref[task], **TOL)
        torch.testing.assert_close(_loss(model, separate, alpha, only_targets=False), ref[task], **TOL)
    loss_a, grads_a = _loss_and_grads(model, separate, 0.5, only_targets=False)  # the old layout
    loss_b, grads_b = _loss_and_grads(model, shared, 0.5)
    torch.testing.assert_close(loss_b, loss_a, **TOL)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], **TOL, msg=name)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_target_logits_and_packed_rows_equal_the_models_own_loss(tiny_model_dirs, kind):
    lm = load_model(str(tiny_model_dirs[kind]))
    model, pad = lm.model.float(), lm.tokenizer.pad_token_id
    items = [{"input_ids": f["input_ids"], "parts": [f]}
             for f in (encode_pair(lm, p + "\npredict:", y) for p, y in zip(PROMPTS, LABELS))]
    plain = causal_batch(items, pad)
    labels = torch.full_like(plain["input_ids"], IGNORE_INDEX)
    for r, item in enumerate(items):
        labels[r, : len(item["parts"][0]["labels"])] = torch.tensor(item["parts"][0]["labels"])
    with torch.no_grad():
        own = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"], labels=labels).loss
        ours = _loss(model, plain, 0.5)  # one task: the token mean, as the model's own loss
        packed = causal_batch(items, pad, pack_length=10_000)
        assert packed["input_ids"].shape[0] == 1 and not (packed["input_ids"] == pad).any()
        torch.testing.assert_close(ours, own, **TOL)
        torch.testing.assert_close(_loss(model, packed, 0.5), own, **TOL)
        logits, _ = logits_at_targets(model, plain)
    assert logits.shape == (len(plain["target_ids"]), model.config.vocab_size)  # the head ran on N positions


def test_packed_shared_prompt_rows_equal_one_example_per_row(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    model, pad = lm.model.float(), lm.tokenizer.pad_token_id
    items = _items(lm, explain=(True, False, True))
    longest = max(len(b.ids) for b in make_blocks(items, True))
    packed = causal_batch(items, pad, pack_length=2 * longest)
    assert packed["input_ids"].shape[0] == 2  # 3 examples in 2 rows
    with torch.no_grad():
        for average in ("token", "sequence"):
            torch.testing.assert_close(_loss(model, packed, 0.5, average),
                                       _loss(model, causal_batch(items, pad), 0.5, average), **TOL)


def test_block_layout_shares_only_prompt_tokens(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    items = _items(lm)
    block = make_blocks(items[:1], share_prompt=True)[0]
    predict, explain = items[0]["parts"]
    shared = block.branch.count(0)
    assert predict["input_ids"][:shared] == explain["input_ids"][:shared]
    assert predict["input_ids"][shared] != explain["input_ids"][shared]
    assert len(block.ids) == len(predict["input_ids"]) + len(explain["input_ids"]) - shared
    # each tail restarts at the end of the prompt
    tail2 = [p for p, b in zip(block.positions, block.branch) if b == 2]
    assert tail2 == list(range(shared, len(explain["input_ids"])))
    assert block.tasks.count(PREDICT) == sum(y != IGNORE_INDEX for y in predict["labels"])
    # the mask: the explain tail sees the prompt, never the predict tail
    mask = causal_batch(items[:1], 0)["attention_mask"][0, 0]
    first_explain = block.branch.index(2)
    assert mask[first_explain, :shared].all() and not mask[first_explain, shared:first_explain].any()


def test_seq2seq_targets_match_the_models_own_loss(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["t5"]))
    items = [{"input_ids": f["input_ids"], "parts": [dict(f, task=[EXPLAIN])]}
             for f in (encode_pair(lm, "explain: " + p, y) for p, y in zip(PROMPTS, WHY))]
    batch = seq2seq_batch(items, lm.tokenizer.pad_token_id)
    with torch.no_grad():
        own = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["labels"]).loss
        weights = target_weights([batch["target_task"]], [batch["target_seq"]], 0.5)[0]
        logits, _ = logits_at_targets(lm.model, batch, seq2seq=True)
    torch.testing.assert_close(weighted_loss(logits, batch["target_ids"], weights), own, **TOL)


# ---- gradient accumulation ------------------------------------------------------------------


class _Grads:
    """Trainer callback keeping the gradients of the first optimizer step (before it is taken)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class Keep(TrainerCallback):
            grads: dict = {}

            def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
                if not self.grads:
                    self.grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

        return Keep()


def _step_grads(lm_dir, pairs, ids, tasks, tmp, average="token", **cfg):
    lm = load_model(str(lm_dir))
    keep = _Grads()
    config = TrainConfig(max_steps=1, learning_rate=1e-3, max_grad_norm=0.0, progress_bar=False,
                         save_minutes=None, **cfg)
    train_supervised(lm, pairs, config, tmp, ids=ids, tasks=tasks, alpha=0.7, average=average,
                     extra_callbacks=[keep])
    return keep.grads


@pytest.mark.parametrize("mode", ["standard", "multitask", "multitask-partial", "multitask-sequence", "seq2seq"])
def test_gradient_accumulation_gives_the_gradients_of_one_batch(tiny_model_dirs, tmp_path, mode):
    prompts = [p + f" ({i})" for i in range(3) for p in PROMPTS][:8]
    pairs, ids, tasks = [], [], []
    for i, prompt in enumerate(prompts):
        pairs.append((prompt + "\npredict:", LABELS[i % 3]))
        ids.append(f"e{i}")
        tasks.append(PREDICT)
        if mode != "standard" and mode != "seq2seq" and not (mode == "multitask-partial" and i % 3 == 0):
            pairs.append((prompt + "\nexplain:", WHY[i % 3] + " x" * i))  # explanations of unequal lengths
            ids.append(f"e{i}")
            tasks.append(EXPLAIN)
    kw = dict(ids=ids, tasks=None if mode in ("standard", "seq2seq") else tasks)
    lm_dir = tiny_model_dirs["t5" if mode == "seq2seq" else "llama"]
    if mode == "seq2seq":  # T5 has dropout, which differs with the micro-batch shapes: turn it off
        t5 = load_model(str(lm_dir))
        t5.model.config.dropout_rate = 0.0
        lm_dir = tmp_path / "t5-no-dropout"
        t5.model.save_pretrained(lm_dir)
        t5.tokenizer.save_pretrained(lm_dir)
    average = "sequence" if mode == "multitask-sequence" else "token"
    one = _step_grads(lm_dir, pairs, tmp=tmp_path / "one", batch_size=8, average=average, **kw)
    two = _step_grads(lm_dir, pairs, tmp=tmp_path / "two", batch_size=4, grad_accum=2, average=average, **kw)
    assert one.keys() == two.keys() and one
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)


# ---- a real kill ----------------------------------------------------------------------------

_TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    import time
    import torch
    from transformers import TrainerCallback
    torch.set_num_threads(1)

    class Slow(TrainerCallback):  # steps of a tiny model take milliseconds: give the kill a window
        def on_step_end(self, args, state, control, **kw):
            time.sleep(0.05)

    from saliency_distill.models import load_model
    from saliency_distill.training import TrainConfig, train_supervised
    model_dir, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    pairs = [(f"Question {i}: where does plate {i} go?\\npredict:", ["cupboard", "table"][i % 2]) for i in range(40)]
    pairs += [(p.replace("predict:", "explain:"), "plate washing " * (1 + i % 3)) for i, (p, _) in enumerate(pairs)]
    ids = [f"e{i % 40}" for i in range(80)]
    tasks = [0] * 40 + [1] * 40
    order = sorted(range(80), key=lambda i: (i % 40, i // 40))
    cfg = TrainConfig(max_steps=steps, batch_size=4, learning_rate=1e-3, logging_steps=1, save_steps=1,
                      save_minutes=None, progress_bar=False, keep_checkpoints=True)
    train_supervised(load_model(model_dir), [pairs[i] for i in order], cfg, out,
                     ids=[ids[i] for i in order], tasks=[tasks[i] for i in order], alpha=0.6,
                     extra_callbacks=[Slow()])
""")


def _run(script, *args, wait=True):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    return proc


def test_training_killed_with_sigkill_resumes_to_the_same_weights(tiny_model_dirs, tmp_path):
    from safetensors.torch import load_file

    steps = 16
    _run(_TRAIN_SCRIPT, tiny_model_dirs["llama"], tmp_path / "whole", steps)
    kill_after = random.Random().randint(2, steps - 4)  # a checkpoint step, then a random moment after it
    proc = _run(_TRAIN_SCRIPT, tiny_model_dirs["llama"], tmp_path / "killed", steps, wait=False)
    state = tmp_path / "killed" / "checkpoints" / f"checkpoint-{kill_after}" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random().uniform(0.0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "model").exists()
    _run(_TRAIN_SCRIPT, tiny_model_dirs["llama"], tmp_path / "killed", steps)  # resumes

    metrics = json.loads((tmp_path / "killed" / "train_metrics.json").read_text())
    assert metrics["resumed_from"] is not None and int(metrics["resumed_from"].split("-")[1]) >= kill_after
    assert metrics["global_step"] == steps
    whole = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)


def test_sequences_without_a_common_prompt_get_rows_of_their_own(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    parts = [dict(encode_pair(lm, "predict: " + PROMPTS[0], LABELS[0]), task=[PREDICT]),
             dict(encode_pair(lm, "explain: " + PROMPTS[0], WHY[0]), task=[EXPLAIN])]
    assert parts[0]["input_ids"][0] != parts[1]["input_ids"][0]  # the "predict: x" format shares nothing
    batch = causal_batch([{"input_ids": parts[0]["input_ids"], "parts": parts}], lm.tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].dim() == 2
    assert batch["target_task"].tolist().count(EXPLAIN) == sum(y != IGNORE_INDEX for y in parts[1]["labels"][1:])
