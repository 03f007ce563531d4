from __future__ import annotations

import hashlib
import json
import os
import sys

import pytest
import torch

from saliency_distill.errors import ConfigError, ModelError
from saliency_distill.models import ModelConfig, get_embedded, list_models, load_model, resolve
from saliency_distill.models.gguf import ensure_converted, join_and_verify, package_dir, part_paths
from saliency_distill.models.registry import EmbeddedModel, GGUFPart


@pytest.mark.parametrize("name, kind, cls", [("llama", "causal", "LlamaForCausalLM"),
                                              ("qwen2", "causal", "Qwen2ForCausalLM"),
                                              ("t5", "seq2seq", "T5ForConditionalGeneration")])
def test_local_folder_loads_with_kind(tiny_model_dirs, name, kind, cls):
    lm = load_model(str(tiny_model_dirs[name]))
    assert (lm.kind, lm.source, type(lm.model).__name__) == (kind, "local", cls)
    assert not lm.model.training
    assert lm.tokenizer.pad_token == "<pad>"


def test_tiny_causal_loss_matches_manual_cross_entropy(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["llama"]))
    ids = lm.tokenizer("the quick brown fox jumps", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = lm.model(input_ids=ids, labels=ids)
    logits = out.logits[0, :-1]
    manual = torch.nn.functional.cross_entropy(logits, ids[0, 1:])
    torch.testing.assert_close(out.loss, manual, rtol=1e-5, atol=1e-6)
    # A random 2-layer model is near uniform over the vocabulary: loss close to log(V).
    assert abs(out.loss.item() - torch.log(torch.tensor(float(len(lm.tokenizer)))).item()) < 0.5


def test_tiny_seq2seq_loss_matches_manual(tiny_model_dirs):
    lm = load_model(str(tiny_model_dirs["t5"]))
    enc = lm.tokenizer("Premise: Two women hug.", return_tensors="pt")
    labels = lm.tokenizer("entailment", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = lm.model(**enc, labels=labels)
    manual = torch.nn.functional.cross_entropy(out.logits[0], labels[0])
    torch.testing.assert_close(out.loss, manual, rtol=1e-5, atol=1e-6)


def test_dtype_and_forced_kind(tiny_model_dirs):
    lm = load_model(ModelConfig(name=str(tiny_model_dirs["qwen2"]), dtype="bfloat16"))
    assert lm.model.dtype == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bfloat16_only_where_the_cpu_computes_it(native, monkeypatch):
    from saliency_distill.models import loading

    monkeypatch.setattr(loading, "_cpu_native", lambda dtype: native)
    assert ModelConfig(dtype="auto", device="cpu").dtype == ("bfloat16" if native else "float32")
    assert ModelConfig(dtype="bfloat16", device="cpu").dtype == "bfloat16"  # asked for: kept
    assert loading.native_dtype("float32", "cpu") and loading.native_dtype("bfloat16", "mps")
    assert loading.native_dtype("bfloat16", "cpu") is native


@pytest.mark.parametrize("native", [True, False])
def test_auto_bf16_training_is_resolved_for_the_models_device(native, tiny_model_dirs, tmp_path, monkeypatch):
    from saliency_distill.config import load_config
    from saliency_distill.experiment import ExperimentConfig
    from saliency_distill.models import loading
    from saliency_distill.training import TrainConfig
    from saliency_distill.training.trainer import build_trainer

    monkeypatch.setattr(loading, "_cpu_native", lambda dtype: native)
    cfg = load_config(ExperimentConfig, None, ["student.train.bf16=auto", "teacher.train.bf16=auto",
                                               "student.model.device=cpu", "teacher.model.device=cpu"])
    assert cfg.student.train.bf16 is native and cfg.teacher.train.bf16 is native  # what the saved config says
    assert load_config(ExperimentConfig, None, ["student.train.bf16=true"]).student.train.bf16 is True
    with pytest.raises(ConfigError, match="'student.train.bf16': 'maybe' is not a valid bool or 'auto'"):
        load_config(ExperimentConfig, None, ["student.train.bf16=maybe"])
    lm = load_model(ModelConfig(name=str(tiny_model_dirs["qwen2"]), device="cpu"))
    trainer = build_trainer(lm, lm.model, [], TrainConfig(bf16="auto"), tmp_path / "ckpt")  # made in code
    assert trainer.args.bf16 is native


def test_emulated_bfloat16_warns_at_load_and_at_training(tiny_model_dirs, tmp_path, monkeypatch, caplog):
    from saliency_distill.models import loading
    from saliency_distill.training import TrainConfig
    from saliency_distill.training.trainer import build_trainer

    folder = str(tiny_model_dirs["qwen2"])
    for native in (True, False):
        monkeypatch.setattr(loading, "_cpu_native", lambda dtype, native=native: native)
        caplog.clear()
        with caplog.at_level("WARNING"):
            lm = load_model(ModelConfig(name=folder, dtype="bfloat16", device="cpu"))
            load_model(ModelConfig(name=folder, device="cpu"))  # float32: never a warning
            build_trainer(lm, lm.model, [], TrainConfig(bf16=True), tmp_path / "ckpt")
        warned = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
        assert len(warned) == (0 if native else 2), warned
    assert folder in warned[0] and "float32 or auto" in warned[0] and "bf16 to false" in warned[1]


def test_device_setting_places_the_weights_and_the_trainer_follows(tiny_model_dirs, tmp_path, monkeypatch):
    from saliency_distill.models.loading import resolve_device
    from saliency_distill.training import TrainConfig
    from saliency_distill.training.trainer import build_trainer

    lm = load_model(ModelConfig(name=str(tiny_model_dirs["qwen2"]), device="cpu"))
    assert {p.device.type for p in lm.model.parameters()} == {"cpu"}
    trainer = build_trainer(lm, lm.model, [], TrainConfig(), tmp_path / "ckpt")
    assert trainer.args.use_cpu and trainer.args.device.type == "cpu"
    assert resolve_device("cuda:0") == "cuda:0"  # an explicit device is taken as given


@pytest.mark.real_device
def test_auto_device_is_the_cpu_without_an_accelerator(monkeypatch):
    from saliency_distill.models.loading import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch, "accelerator", None) is not None:
        monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device.__module__ == "saliency_distill.models.loading"
    assert resolve_device("auto") == "cpu"


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", ""])
def test_a_bad_device_names_the_key(device):
    with pytest.raises(ConfigError, match="config key 'device'"):
        ModelConfig(device=device)


def test_folder_without_safetensors_is_refused(tiny_model_dirs, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dirs["llama"], folder)
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # a pickle: must never be loaded
    with pytest.raises(ModelError, match="pickled"):
        load_model(str(folder))


def test_resolution_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a Hugging Face model folder"):
        resolve(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="model folder not found"):
        resolve(str(tmp_path / "missing") + "/")
    assert resolve("some-org/some-model") == ("hub", "some-org/some-model")


def test_unreachable_hub_id_is_one_line_error():
    # HF_HUB_OFFLINE=1 (conftest): the hub path is exercised and fails the way it does offline.
    with pytest.raises(ModelError, match="cannot resolve model 'no-such-org/no-such-model'") as info:
        load_model("no-such-org/no-such-model")
    assert "\n" not in str(info.value)
    assert "smollm2-135m-instruct" in str(info.value)


def test_registry_lists_three_models():
    assert list_models() == ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct"]
    assert len(get_embedded("qwen2.5-coder-1.5b-instruct").parts) == 22
    assert get_embedded("qwen2.5-coder-0.5b-instruct").parts[5].relpath == "data/part06.bin"
    # fully fine-tuned models keep the exact float32 dequantisation; the LoRA-only teacher is stored in bfloat16
    assert {n: get_embedded(n).stored_dtype for n in list_models()} == {
        "qwen2.5-coder-0.5b-instruct": "float32", "qwen2.5-coder-1.5b-instruct": "bfloat16",
        "smollm2-135m-instruct": "float32"}
    with pytest.raises(ModelError, match="unknown embedded model 'gpt-9'"):
        get_embedded("gpt-9")


# ---- embedded GGUF parts, with fake packages on sys.path --------------------------------------

@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Three installed fake packages holding the parts of a 'GGUF' (random bytes)."""
    root = tmp_path / "site"
    blobs = [os.urandom(1000 + i) for i in range(3)]
    for i, blob in enumerate(blobs, 1):
        pkg = root / f"fakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(root))
    whole = b"".join(blobs)
    spec = EmbeddedModel(
        name="fake", role="test", description="fake", gguf_name="fake.gguf",
        parts=tuple(GGUFPart(f"fakepart{i}", f"data/part{i:02d}.bin") for i in (1, 2, 3)),
        size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), requirements="requirements/fake.txt",
    )
    return spec, whole


def test_join_and_verify(fake_parts, tmp_path):
    spec, whole = fake_parts
    assert package_dir("fakepart2").name == "fakepart2"
    out = join_and_verify(spec, part_paths(spec), tmp_path / "joined.gguf")
    assert out.read_bytes() == whole


def test_hash_mismatch_is_refused_and_leaves_nothing(fake_parts, cache):
    spec, _ = fake_parts
    bad = EmbeddedModel(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(ModelError, match=r"embedded model 'fake': GGUF fake.gguf has sha256 [0-9a-f]{64} \(3003 bytes\), expected 0{64}"):
        ensure_converted(bad)
    models = cache / "models"
    assert not (models / "fake").exists()
    assert not list(models.iterdir())  # the temporary work folder is gone too


def test_missing_parts_say_how_to_install(fake_parts, monkeypatch):
    spec, _ = fake_parts
    monkeypatch.delitem(sys.modules, "fakepart3", raising=False)
    missing = EmbeddedModel(**{**spec.__dict__, "parts": spec.parts + (GGUFPart("not_installed_pkg", "data/part04.bin"),)})
    with pytest.raises(ModelError, match=r"1 of 4 GGUF parts are not installed .*requirements/fake\.txt"):
        part_paths(missing)


def test_converted_cache_is_checked_against_its_record(fake_parts, cache, monkeypatch):
    import saliency_distill.models.gguf as gguf

    spec, _ = fake_parts
    conversions = []

    def fake_convert(gguf_path, out_dir, dtype="float32"):  # stands in for the GGUF -> safetensors step
        conversions.append((gguf_path, dtype))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model.safetensors").write_bytes(b"weights" * 100)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "convert_gguf", fake_convert)
    folder = ensure_converted(spec)
    assert len(conversions) == 1 and gguf.cache_problem(folder, spec) is None
    assert ensure_converted(spec) == folder and len(conversions) == 1  # a sound cache is reused

    weights = folder / "model.safetensors"
    weights.write_bytes(b"weights" * 50)  # truncated
    assert "has 350 bytes, 700 were written" in gguf.cache_problem(folder, spec)
    ensure_converted(spec)
    assert len(conversions) == 2 and weights.read_bytes() == b"weights" * 100

    weights.write_bytes(b"WEIGHTS" * 100)  # edited, same size
    assert "changed after the conversion" in gguf.cache_problem(folder, spec)
    other = EmbeddedModel(**{**spec.__dict__, "sha256": "1" * 64})
    assert "another GGUF" in gguf.cache_problem(folder, other)
    ensure_converted(spec)
    assert len(conversions) == 3 and weights.read_bytes() == b"weights" * 100

    # The registry's stored dtype is what the conversion is asked for and what the record says; a
    # folder stored in another (or, recorded before the dtype was, in float32) is converted again.
    assert [d for _, d in conversions] == ["float32"] * 3 and gguf.provenance(folder)["dtype"] == "float32"
    half = EmbeddedModel(**{**spec.__dict__, "stored_dtype": "bfloat16"})
    assert gguf.cache_problem(folder, half) == "it holds float32 weights, this version stores bfloat16"
    ensure_converted(half)
    assert conversions[-1][1] == "bfloat16" and gguf.cache_problem(folder, half) is None
    record = gguf.provenance(folder)
    del record["dtype"]
    (folder / gguf.PROVENANCE).write_text(json.dumps(record))
    assert "it holds float32 weights" in gguf.cache_problem(folder, half)
    assert gguf.cache_problem(folder, spec) is None


def test_a_conversion_reads_the_gguf_header_once(tmp_path, monkeypatch):
    import gguf as gguf_lib

    made = []

    class Reader:
        def __init__(self, path, mode="r"):
            made.append(str(path))

    monkeypatch.setattr(gguf_lib, "GGUFReader", Reader)
    path = tmp_path / "m.gguf"
    from saliency_distill.models.gguf import _one_reader

    with _one_reader(path):
        first = gguf_lib.GGUFReader(str(path))  # config, tokenizer and weights each ask for one
        assert gguf_lib.GGUFReader(tmp_path / "." / "m.gguf") is first
        other = gguf_lib.GGUFReader(tmp_path / "other.gguf")
    assert other is not first and made == [str(path), str(tmp_path / "other.gguf")]
    assert gguf_lib.GGUFReader is Reader
