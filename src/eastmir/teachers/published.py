"""Teachers that run through a maintained package (``pip install eastmir[vggish]``, …) with weights from
their official source.

- :func:`require` imports the package, or stops with the ``pip install`` line that provides it.
- :class:`PublishedWeights` is one weight file: its official URL and the
  checksum its publisher gives (Zenodo's md5, the sha256 prefix in a
  torch-hub file name), or none.
- :func:`locate_weights` finds the file: ``weights_file`` (your own, e.g.
  fine-tuned, weights: used as they are), else ``weights_dir`` /
  ``$EASTMIR_WEIGHTS``, else the shared cache (``$EASTMIR_CACHE/weights``),
  else it downloads into the cache (resumable). A file from a folder, the
  cache or a download is checked against the published checksum; where the
  publisher gives none, the sha256 of the first verified copy is recorded in
  ``weights.json`` next to the cache and every later copy must match it.
  When the file cannot be had, the error names the file, the folder to put
  it in and the URL to download it from.

Every teacher's store identity includes the sha256 of the weights it
loaded, so other weights never share a store entry.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from eastmir.errors import ConfigError, WeightsUnavailable
from eastmir.fetch import ChecksumMismatch, DigestRecord, FetchError, Published, check, fetch
from eastmir.teachers.weights import default_cache_dir, weights_dir_from_env

RECORD = "weights.json"


@dataclass(frozen=True)
class PublishedWeights(Published):
    """A weight file from its official source (:class:`~eastmir.fetch.Published`); ``checksum`` as its
    publisher gives it: ``"md5:…"``, ``"sha256:…"``, or ``"sha256-prefix:…"`` (torch hub's convention: the
    first hex digits of the sha256 in the file name); ``None`` when it publishes none.
    """

    @property
    def describe(self) -> str:
        check = self.checksum or "no published checksum (sha256 recorded on first download)"
        return f"{self.url} ({check})"

    def available(self, weights_dir: str | Path | None = None) -> bool:
        """Whether the file is on this machine (cached, or in ``weights_dir``)."""
        return available(self, weights_dir)


def require(module: str, extra: str, teacher: str) -> ModuleType:
    """``import module``, or a one-line error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"teacher {teacher} runs through the {module.split('.')[0]} package, which cannot be imported here "
            f"({err}); install it with `pip install 'eastmir[{extra}]'`"
        ) from None


def _cache() -> Path:
    return default_cache_dir() / "weights"


def _record() -> DigestRecord:
    return DigestRecord(_cache() / RECORD)


def verify(path: Path, spec: PublishedWeights) -> str:
    """The sha256 of ``path`` after checking it against the published checksum (or the recorded sha256)."""
    try:
        return check(path, spec, _record())
    except ChecksumMismatch as err:
        advice = f"download it again from {spec.url} (or pass your own weights as weights_file)"
        raise WeightsUnavailable(f"{err}; {advice}") from None


def available(spec: PublishedWeights, weights_dir: str | Path | None = None) -> bool:
    """Whether the file is on this machine now (``weights_dir`` / ``$EASTMIR_WEIGHTS``, or the cache)."""
    folder = weights_dir_from_env(weights_dir)
    return ((folder / spec.filename).is_file() if folder else False) or (_cache() / spec.filename).is_file()


def locate_weights(
    spec: PublishedWeights,
    teacher: str,
    weights_file: str | Path | None = None,
    weights_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """The local path of ``spec``'s file, found or downloaded as the module docstring says."""
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise WeightsUnavailable(f"{path}: no such weights file (teacher {teacher}, option weights_file)")
        return path
    folder = weights_dir_from_env(weights_dir)
    if folder is not None:
        path = folder / spec.filename
        if not path.is_file():
            raise WeightsUnavailable(
                f"teacher {teacher}: {spec.filename} is not in {folder}; download it from {spec.url} into that folder"
            )
        verify(path, spec)
        return path
    cache = _cache()
    if not (cache / spec.filename).is_file():
        try:
            return fetch(spec, cache, _record(), progress)
        except ChecksumMismatch as err:
            raise WeightsUnavailable(f"teacher {teacher}: {err}") from None
        except FetchError as err:
            raise WeightsUnavailable(
                f"teacher {teacher}: {spec.filename} is not on this machine and could not be downloaded ({err}); "
                f"download it from {spec.url} and put it in {cache}, or in a folder you pass as --weights-dir "
                "(or EASTMIR_WEIGHTS)"
            ) from None
    path = cache / spec.filename
    verify(path, spec)
    return path


def _numpy_globals() -> list:
    """The numpy types a checkpoint holding plain arrays needs, allow-listed by name for ``weights_only``."""
    import numpy as np
    import numpy.dtypes

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    return [  # under numpy 2's names and numpy 1's (files saved before 2024)
        _reconstruct,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        scalar,
        (scalar, "numpy.core.multiarray.scalar"),
        np.ndarray,
        np.dtype,
        numpy.dtypes.Float32DType,
        numpy.dtypes.Float64DType,
        numpy.dtypes.Int64DType,
    ]


def load_checkpoint(path: Path, teacher: str, numpy_arrays: bool = False) -> dict:
    """A checkpoint read with ``torch.load(weights_only=True)``: tensors and plain containers only (and numpy
    arrays when ``numpy_arrays``); anything else is refused, naming the file."""
    import pickle

    import torch

    try:
        if numpy_arrays:
            with torch.serialization.safe_globals(_numpy_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        text = " ".join(str(err).split())
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        detail = f"it holds {found.group(1)}" if found else text[:300]
        raise WeightsUnavailable(
            f"{path}: cannot be read as teacher {teacher}'s weights ({detail}); eastmir loads tensors only, never "
            "arbitrary pickled objects: check that this is the published file"
        ) from None


def load_into(model, state: dict, path: Path, teacher: str) -> None:
    """``model.load_state_dict(state)`` exactly; a missing, unexpected or misshapen tensor names the file."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:400]
        raise WeightsUnavailable(f"{path}: not teacher {teacher}'s weights ({detail})") from None
