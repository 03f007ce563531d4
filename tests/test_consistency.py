"""Saliency-guided consistency: the second reading drops exactly the chosen words and keeps the
label; the trainer's loss equals a reference built from separate forward passes, with the whole
input's side held fixed; the modes run end to end on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from saliency_distill.cli.main import main
from saliency_distill.data import Example, TaskConfig, get_task
from saliency_distill.errors import ConfigError, DataError
from saliency_distill.models import load_model
from saliency_distill.rationale.words import content_words
from saliency_distill.student.consistency import aligned_scores, drop_words, dropped_count, masked_inputs
from saliency_distill.student.modes import MODES, build_pairs
from saliency_distill.training import TrainConfig, encode_pair
from saliency_distill.training.features import IGNORE_INDEX
from saliency_distill.training.losses import OPTION, PREDICT
from saliency_distill.training.packing import causal_batch, make_blocks
from saliency_distill.training.trainer import build_trainer
from tests.conftest import write_planets


def _task():
    from saliency_distill.data import FieldMap

    return get_task("file"), TaskConfig(name="file", path="-", fields=FieldMap(content=["question"], choices="options"))


EXAMPLE = Example("e1", {"question": "Where would a hungry cat look for fresh fish today?"}, "kitchen",
                  ("kitchen", "garden", "roof"))


def test_drop_words_removes_exactly_the_spans_and_their_space():
    text = "the quick brown fox\njumps over"
    assert drop_words(text, [(4, 9)]) == "the brown fox\njumps over"
    assert drop_words(text, [(16, 19), (26, 30)]) == "the quick brown\njumps"  # a line's last word: the space before
    assert drop_words(text, []) == text
    assert dropped_count(10, 0.3) == 3 and dropped_count(2, 0.9) == 1 and dropped_count(1, 0.5) == 0
    with pytest.raises(ConfigError, match="student.mask_fraction"):
        dropped_count(5, 1.0)


def test_the_least_salient_words_are_dropped_and_the_label_is_kept():
    task, cfg = _task()
    prompt = task.render(EXAMPLE, cfg)
    words = [w for w, _, _ in content_words(prompt.text, prompt.content_spans)]
    # the teacher's store row scores its own prompt's words: the same words, in order, with other offsets
    scores = {w: float(i + 1) for i, w in enumerate(words)}
    scores.update({"hungry": -0.01, "fresh": 0.02, "today": 0.03})  # the lowest |score|s, one of them negative
    row = {"id": "e1", "words": [[w, scores[w], 100 + i, 101 + i] for i, w in enumerate(words)]}
    n = dropped_count(10, 0.3)  # the question's 10 words (the options' words are never dropped)
    assert len(words) == 13 and n == 3 and aligned_scores(words, row) == [abs(scores[w]) for w in words]
    masked = masked_inputs(task, cfg, [EXAMPLE], "saliency", 0.3, seed=0, rows={"e1": row})["e1"]
    first = masked.split("\n")[0]
    kept = [w for w, _, _ in content_words(first, [(len("Question: "), len(first))])]
    assert kept == [w for w in words[:10] if w not in ("hungry", "fresh", "today")]  # the question's words
    assert masked.split("\n")[1:] == prompt.text.split("\n")[1:]  # the options untouched
    assert "hungry" not in masked and "fresh" not in masked and "today" not in masked
    assert masked == prompt.text.replace("hungry ", "").replace("fresh ", "").replace(" today", "")

    pairs = build_pairs("saliency-consistency", task, cfg, [EXAMPLE], masked={"e1": masked})
    assert pairs.tasks == [PREDICT] + [OPTION] * 6 and pairs.targets[0] == "kitchen"  # the label is the gold one
    assert pairs.views == [None, 0, 0, 0, 1, 1, 1] and pairs.consistency and not pairs.soft
    assert pairs.targets[1:] == list(EXAMPLE.choices) * 2
    assert all(prompt.text in p for p in pairs.prompts[:4]) and all(masked in p for p in pairs.prompts[4:])


def test_random_control_drops_as_many_words_seeded():
    task, cfg = _task()
    examples = [EXAMPLE, Example("e2", {"question": "Which tall tree grows beside the old red barn?"}, "oak",
                                 ("oak", "pine"))]
    a = masked_inputs(task, cfg, examples, "random", 0.3, seed=1)
    assert a == masked_inputs(task, cfg, examples, "random", 0.3, seed=1)
    assert any(a[k] != v for k, v in masked_inputs(task, cfg, examples, "random", 0.3, seed=2).items())
    for ex in examples:
        prompt = task.render(ex, cfg)
        n = len(ex.fields["question"].split())  # the question's words: the options are never dropped
        every = len(content_words(prompt.text, [(0, len(prompt.text))]))
        assert len(content_words(a[ex.id], [(0, len(a[ex.id]))])) == every - dropped_count(n, 0.3)
        assert a[ex.id].split("\n")[1:] == prompt.text.split("\n")[1:]
    with pytest.raises(DataError, match="no rationale-store row"):
        masked_inputs(task, cfg, [EXAMPLE], "saliency", 0.3, seed=0, rows={})


def test_consistency_needs_a_choice_task():
    from saliency_distill.data import FieldMap

    cfg = TaskConfig(name="file", path="-", fields=FieldMap(content=["question"]))
    ex = Example("f", {"question": "What is 2 plus 2?"}, "4")
    with pytest.raises(DataError, match="needs a choice task"):
        build_pairs("random-consistency", get_task("file"), cfg, [ex], masked={"f": "What is 2 plus?"})
    assert MODES["saliency-consistency"].needs_rationales and not MODES["random-consistency"].needs_teacher


WHOLE = "Question: Where would a hungry cat look for fresh fish?\npredict:"
DROPPED = "Question: Where would a cat look for fish?\npredict:"
OPTIONS = ["kitchen", "garden", "roof"]


def _items(lm, dropped=DROPPED):
    parts = [dict(encode_pair(lm, WHOLE, "kitchen"), task=[PREDICT])]
    for view, prompt in enumerate((WHOLE, dropped)):
        parts += [dict(encode_pair(lm, prompt, o), task=[OPTION], view=[view]) for o in OPTIONS]
    return [{"input_ids": parts[0]["input_ids"], "parts": parts}]


def _sequence_logprob(model, part):
    ids, labels = torch.tensor([part["input_ids"]]), torch.tensor(part["labels"])
    logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    keep = labels[1:] != IGNORE_INDEX
    return logp[keep].gather(1, labels[1:][keep][:, None]).sum()


def test_trainer_loss_equals_separate_passes_and_the_whole_reading_gets_no_gradient(tiny_model_dirs, tmp_path):
    lm = load_model(str(tiny_model_dirs["llama"]))
    model = lm.model.float()
    items = _items(lm)
    blocks = make_blocks(items, share_prompt=True)
    assert len(blocks) == 2 and sorted({s for b in blocks for s in b.seqs}) == list(range(7))  # two readings
    batch = causal_batch(items, lm.tokenizer.pad_token_id)
    assert batch["seq_view"].tolist() == [-1, 0, 0, 0, 1, 1, 1] and "seq_teacher" not in batch
    trainer = build_trainer(lm, model, items, TrainConfig(max_steps=1, progress_bar=False, save_minutes=None),
                            tmp_path, alpha=0.3, temperature=1.0)
    predict = items[0]["parts"][0]
    labels = torch.tensor([predict["labels"]])
    nll = model(input_ids=torch.tensor([predict["input_ids"]]), labels=labels).loss
    whole = torch.stack([_sequence_logprob(model, p) for p in items[0]["parts"][1:4]])
    dropped = torch.stack([_sequence_logprob(model, p) for p in items[0]["parts"][4:]])
    kl = F.kl_div(F.log_softmax(dropped, -1), F.log_softmax(whole, -1), reduction="sum", log_target=True)
    assert kl.item() > 0
    got = trainer.compute_loss(model, batch)
    torch.testing.assert_close(got, 0.3 * nll + 0.7 * kl, rtol=1e-5, atol=1e-6)
    # the same reading twice: no KL, the loss is the label's alone
    same = causal_batch(_items(lm, dropped=WHOLE), lm.tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(trainer.compute_loss(model, same), 0.3 * nll.detach(), rtol=1e-5, atol=1e-6)
    # the KL's gradient reaches the model only through the dropped reading: compare with a reference
    # whose whole-input side is detached
    model.zero_grad()
    got.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    whole = torch.stack([_sequence_logprob(model, p) for p in items[0]["parts"][1:4]]).detach()
    dropped = torch.stack([_sequence_logprob(model, p) for p in items[0]["parts"][4:]])
    nll = model(input_ids=torch.tensor([predict["input_ids"]]), labels=labels).loss
    ref = 0.3 * nll + 0.7 * F.kl_div(F.log_softmax(dropped, -1), F.log_softmax(whole, -1), reduction="sum",
                                     log_target=True)
    ref.backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)


def test_both_modes_train_end_to_end(tmp_path, tiny_model_dirs):
    data = write_planets(tmp_path)
    args = [f"run_dir={tmp_path / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={tiny_model_dirs['qwen2']}",
            f"student.model.name={tiny_model_dirs['llama']}", "teacher.finetune=false",
            "student.modes=[standard,saliency-consistency,random-consistency]", "student.train.max_steps=2",
            "student.train.progress_bar=false", "student.eval.max_new_tokens=4", "progress=false",
            "attribution.target=teacher", "student.mask_fraction=0.4"]
    assert main(["-q", "train", *args]) == 0
    results = {m: json.loads((tmp_path / "run" / "students" / m / "seed0" / "result.json").read_text())
               for m in ("standard", "saliency-consistency", "random-consistency")}
    # each example: the predict pair and every option twice
    assert results["saliency-consistency"]["train_sequences"] == results["standard"]["train_sequences"] * 5
    assert results["random-consistency"]["train_sequences"] == results["standard"]["train_sequences"] * 5
    assert all(r["loss_first"] > 0 for r in results.values())
    # the fraction is part of a consistency run's identity, not of the others'
    assert main(["-q", "train", *args[:-1], "student.mask_fraction=0.2"]) == 2
    assert main(["-q", "train", *args[:-1], "student.mask_fraction=0.2", "student.modes=[standard]"]) == 0
