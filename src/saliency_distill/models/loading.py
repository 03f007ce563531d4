"""Resolve a model spec (embedded name, local folder or hub id) to a loaded model and tokenizer."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import field
from ..errors import ConfigError, ModelError
from .gguf import ensure_converted
from .registry import EMBEDDED_MODELS, list_models

logger = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16", "auto")
SLOW_DTYPE = "benchmarks/results/cpu_dtype.md"  # where the cost of an emulated dtype was measured


@dataclass(frozen=True)
class ModelConfig:
    name: str = field(
        "smollm2-135m-instruct",
        "embedded model name (see `saliency-distill models`), local folder, or hub id org/name",
    )
    dtype: str = field(
        "float32",
        "weights dtype: float32, bfloat16, float16, or auto (bfloat16 where the device computes it in hardware, "
        "else float32; resolved when the config is read, so the saved config says which)",
    )
    kind: Literal["auto", "causal", "seq2seq"] = field(
        "auto", "auto reads config.is_encoder_decoder; or force causal / seq2seq"
    )
    revision: str | None = field(None, "hub revision (branch, tag or commit) for hub ids")
    trust_remote_code: bool = field(False, "run code shipped with a hub model (off unless asked)")
    device: str = field(
        "auto", "where the weights live: auto (this process's GPU or other accelerator, else cpu), cpu, cuda, cuda:1"
    )

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model name must not be empty")
        if self.dtype not in DTYPES:
            raise ConfigError(f"config key 'dtype': {self.dtype!r} is not one of {list(DTYPES)}")
        if self.device != "auto" and not _DEVICE.match(self.device):
            raise ConfigError(f"config key 'device': {self.device!r} is not auto or a device such as cpu, cuda, cuda:1")
        if self.dtype == "auto":
            native = native_dtype("bfloat16", resolve_device(self.device))
            object.__setattr__(self, "dtype", "bfloat16" if native else "float32")


@dataclass
class LoadedModel:
    """A model with its tokenizer and what kind it is (causal or encoder-decoder)."""

    model: Any
    tokenizer: Any
    kind: Literal["causal", "seq2seq"]
    name: str
    source: str  # "embedded", "local" or "hub"
    path: str

    @property
    def is_seq2seq(self) -> bool:
        return self.kind == "seq2seq"


_DEVICE = re.compile(r"^(cpu|cuda|mps|xpu|npu|hpu)(:\d+)?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_name(name: str, key: str) -> None:
    """Raise a one-line ConfigError naming ``key`` unless ``name`` is an embedded model, an
    existing folder or shaped like a hub id (org/name). Converts, loads and downloads nothing:
    run before the first stage, so a typo costs seconds, not the stages before the model loads."""
    if name in EMBEDDED_MODELS or Path(name).expanduser().exists():
        return
    if name.startswith((".", "/", "~")) or name.endswith(("/", ".json", ".safetensors")) or not _HUB_ID.match(name):
        raise ConfigError(
            f"config key '{key}': {name!r} is not an embedded model ({', '.join(sorted(EMBEDDED_MODELS))}), "
            "an existing model folder, or a hub id org/name"
        )


def resolve(name: str) -> tuple[str, str]:
    """(source, path_or_id) for a spec: embedded registry first, then a local folder, else hub."""
    if name in EMBEDDED_MODELS:
        return "embedded", str(ensure_converted(EMBEDDED_MODELS[name]))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a Hugging Face model folder (no config.json)")
        return "local", str(path)
    if name.startswith((".", "/", "~")) or name.endswith(("/", ".json", ".safetensors")):
        raise ModelError(f"{name}: model folder not found")
    return "hub", name


def load_model(cfg: ModelConfig | str) -> LoadedModel:
    """Load (model, tokenizer). Weights only as safetensors; no remote code unless asked."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    cfg = ModelConfig(name=cfg) if isinstance(cfg, str) else cfg
    source, where = resolve(cfg.name)
    common: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if source == "hub" and cfg.revision:
        common["revision"] = cfg.revision
    try:
        hf_config = AutoConfig.from_pretrained(where, **common)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"cannot resolve model '{cfg.name}': not an embedded model ({', '.join(list_models())}), "
            f"not a local folder, and loading it as a hub id failed: {first}"
        ) from None
    kind = cfg.kind
    if kind == "auto":
        kind = "seq2seq" if getattr(hf_config, "is_encoder_decoder", False) else "causal"
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(
            where, dtype=getattr(torch, cfg.dtype), use_safetensors=True, **common
        )
        tokenizer = AutoTokenizer.from_pretrained(where, **common)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"model '{cfg.name}' ({where}): {first}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    device = resolve_device(cfg.device)
    if not native_dtype(cfg.dtype, device):
        logger.warning("model %s: %s is emulated on this %s (%s), several times slower than float32 (%s); "
                       "set its dtype to float32 or auto", cfg.name, cfg.dtype, device, _capability(device), SLOW_DTYPE)
    model.to(device)
    model.eval()
    logger.debug("loaded %s model %s from %s (%s)", kind, cfg.name, source, where)
    return LoadedModel(model, tokenizer, kind, cfg.name, source, where)


def native_dtype(dtype: str, device: str) -> bool:
    """Whether ``device`` computes ``dtype`` in hardware. float32 always. On a CPU, bfloat16 needs
    AVX-512 BF16 or AMX (without them oneDNN emulates it, several times slower than float32; see
    SLOW_DTYPE) and float16 needs AMX-FP16; on CUDA, bfloat16 needs Ampere or newer. Other
    accelerators are taken to compute both."""
    import torch

    kind = device.split(":")[0]
    if dtype == "float32" or kind not in ("cpu", "cuda"):
        return True
    if kind == "cuda":
        return dtype == "float16" or bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return _cpu_native(dtype)


def _cpu_native(dtype: str) -> bool:
    """This CPU's answer, from the probes oneDNN itself uses (private torch functions: a torch
    without them counts as emulating)."""
    import torch

    probe = {"bfloat16": getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None),
             "float16": getattr(torch.cpu, "_is_amx_fp16_supported", None)}.get(dtype)
    return bool(probe is not None and probe())


def _capability(device: str) -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability() if device == "cpu" else device


def resolve_device(device: str) -> str:
    """The torch device for a ``device`` setting. "auto" is this process's accelerator (under
    `accelerate launch`, the one of its LOCAL_RANK) where one is available, else the CPU."""
    import os

    import torch

    if device != "auto":
        return device
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        kind = accelerator.current_accelerator().type
    elif torch.cuda.is_available():
        kind = "cuda"
    else:
        return "cpu"
    return f"{kind}:{int(os.environ.get('LOCAL_RANK', 0))}"


def release(lm: LoadedModel) -> None:
    """Drop ``lm``'s weights now (a 1.5B teacher holds GBs) rather than whenever the garbage
    collector gets to them, so the next model loads into free memory. ``lm`` is unusable after."""
    import gc

    lm.model = None
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
