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


def _make_sdist(cache, member: str = "fakedata-1.0/data/rows.jsonl") -> str:
    import io
    import tarfile

    path = cache / "wheels" / "fakedata-1.0.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b'{"a": 2}\n'
    with tarfile.open(path, "w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sdist_spec(sha: str, member: str = "fakedata-1.0/data/rows.jsonl") -> PackageFile:
    return PackageFile(package="fakedata", version="1.0", wheel="fakedata-1.0.tar.gz", sha256=sha,
                       member=member, licence="test", source="test")


def test_fetch_extracts_a_member_of_a_source_archive(cache):
    sha = _make_sdist(cache)
    out = fetch(_sdist_spec(sha))
    assert out.read_bytes() == b'{"a": 2}\n'
    with pytest.raises(DataError, match="fakedata-1.0.tar.gz: has no member fakedata-1.0/other.jsonl"):
        fetch(_sdist_spec(sha, "fakedata-1.0/other.jsonl"))
    bad = _sdist_spec("0" * 64, "fakedata-1.0/data/rows.jsonl")
    member_path(bad).unlink()
    with pytest.raises(DataError, match="does not match the pinned"):
        fetch(bad)
    assert (cache / "wheels" / "fakedata-1.0.tar.gz.bad").is_file()


def test_a_source_archive_is_downloaded_by_its_listed_url_without_pip(cache, monkeypatch, tmp_path):
    # the registry's JSON listing names the file's URL; no pip (which would run setup.py) is called
    import json

    from saliency_distill.data import packages

    src = tmp_path / "served.tar.gz"
    sha = _make_sdist(tmp_path / "made")
    (tmp_path / "made" / "wheels" / "fakedata-1.0.tar.gz").rename(src)
    index = tmp_path / "index" / "fakedata"
    index.mkdir(parents=True)
    (index / "index.json").write_text(json.dumps({"files": [{"filename": "fakedata-1.0.tar.gz",
                                                             "url": src.as_uri()}]}))
    real_urlopen = packages.urllib.request.urlopen

    def urlopen(req, timeout=None):
        url = req.full_url if hasattr(req, "full_url") else req
        if url.endswith("/fakedata/"):  # the listing: served from a file
            return real_urlopen((index / "index.json").as_uri(), timeout=timeout)
        return real_urlopen(url, timeout=timeout)

    monkeypatch.setattr(packages.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(packages.subprocess, "run", lambda *a, **k: pytest.fail("pip was called"))
    out = fetch(_sdist_spec(sha))
    assert out.read_bytes() == b'{"a": 2}\n'
    missing = PackageFile(**{**_sdist_spec(sha).__dict__, "version": "2.0", "wheel": "fakedata-2.0.tar.gz"})
    with pytest.raises(DataError, match="lists no file fakedata-2.0.tar.gz for fakedata"):
        fetch(missing)
