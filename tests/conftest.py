"""Shared fixtures: a tokenizer built in-process and tiny random Llama / Qwen2 / T5 models.

Nothing here downloads: the tokenizer is a byte-level BPE trained on a few sentences, the
models are built from configs with hidden size 32 and 2 layers and saved as safetensors folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "Question: Where would you put a plate after washing it? Answer Choices: (a) cupboard (b) table",
    "Premise: Two women are embracing. Hypothesis: Two women hug. Answer: entailment neutral contradiction",
    "Luke scored 84 points after playing 2 rounds. How many points per round? ( 84.0 / 2.0 )",
    "The resistance increases when Eric adds more resistors to the series circuit; it decreases otherwise.",
    "the quick brown fox jumps over the lazy dog, 0 1 2 3 4 5 6 7 8 9 + - * / = ? ! . , ; : ' \"",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


@pytest.fixture(autouse=True)
def _models_on_the_cpu(request, monkeypatch):
    """In-process tests compare against references computed on the CPU, so `device: auto` means
    the CPU here, also on a GPU machine; tests/test_gpu.py runs the stages on the GPU."""
    if request.node.path.name != "test_gpu.py" and not request.node.get_closest_marker("real_device"):
        from saliency_distill.models import loading

        monkeypatch.setattr(loading, "resolve_device", lambda device: "cpu" if device == "auto" else device)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


def _tiny_causal(kind: str, vocab: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    return Qwen2ForCausalLM(Qwen2Config(**common))


def _tiny_t5(vocab: int):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, pad_token_id=0, eos_token_id=3, decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(cfg)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """Folders holding tiny random llama, qwen2 and t5 models plus the test tokenizer."""
    root = tmp_path_factory.mktemp("tiny_models")
    out = {}
    vocab = len(tokenizer)
    for name in ("llama", "qwen2", "t5"):
        model = _tiny_t5(vocab) if name == "t5" else _tiny_causal(name, vocab)
        folder = root / name
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        out[name] = folder
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty package cache for one test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("SALIENCY_DISTILL_CACHE", str(root))
    return root


def write_planets(folder: Path) -> Path:
    """A 24-row two-choice file task ("Which planet is bigger, number i or number i + 1?") in
    ``folder/mine.jsonl``: the data of the tiny end-to-end runs."""
    import json

    rows = [{"question": f"Which planet is bigger, number {i} or number {i + 1}?",
             "options": [f"planet {i}", f"planet {i + 1}"], "answer": f"planet {i + 1}"} for i in range(24)]
    data = folder / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


@pytest.fixture(scope="session")
def student_run(tmp_path_factory, tiny_model_dirs) -> Path:
    """A tiny run folder (24 rows of a file task, tiny llama student, 2 steps) whose standard,
    random-words and teacher-label students kept their weights, with the report; for predict and
    export tests."""

    from saliency_distill.cli.main import main

    root = tmp_path_factory.mktemp("student_run")
    data = write_planets(root)
    args = [f"run_dir={root / 'run'}", "task.name=file", f"task.path={data}", "task.fields.choices=options",
            "task.fields.label=answer", f"teacher.model.name={tiny_model_dirs['qwen2']}",
            f"student.model.name={tiny_model_dirs['llama']}", "teacher.finetune=false",
            "student.modes=[standard,random-words,teacher-label]",
            "student.train.max_steps=2", "student.train.progress_bar=false", "student.eval.max_new_tokens=4",
            "student.keep_models=true", "progress=false", "rationale.k=3"]
    assert main(["-q", "train", *args]) == 0
    return root / "run"
