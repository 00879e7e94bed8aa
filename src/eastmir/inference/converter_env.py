"""The LiteRT converter's own environment: a virtual environment beside the project's, set up once per machine.

``litert-torch`` (Google's PyTorch → ``.tflite`` converter) runs with this
project's torch, but it pins packages eastmir also uses (it would move
pydantic back to 2.11 and add jax, transformers and torchao), so it is never
installed into eastmir's environment. ``eastmir export --format litert`` makes
``$EASTMIR_CACHE/converters/litert-torch-<version>-torch-<version>`` the
first time: a venv that sees this environment's torch (a ``.pth`` file names
its folder, so the converter uses the very torch, CPU or CUDA build, that
exported the program) and holds the converter's own packages, which come
first on its path. Only :mod:`eastmir.inference.litert_worker` runs there,
reading a ``torch.export`` program and writing the ``.tflite``.

``$EASTMIR_CONVERTER_PYTHON`` names another Python to use instead (one with
``litert-torch`` and this torch version), e.g. on a node without a package
registry.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

from eastmir.errors import RunError
from eastmir.teachers.weights import default_cache_dir

LITERT_TORCH = "litert-torch==0.10.0"  # needs torch >= 2.4, < 2.15
WORKER = Path(__file__).with_name("litert_worker.py")


def converter_home() -> Path:
    """Where the converter's venv lives for this torch and Python."""
    tag = f"{LITERT_TORCH.replace('==', '-')}-torch-{torch.__version__.replace('+', '_')}-py{sys.version_info[0]}"
    return default_cache_dir() / "converters" / f"{tag}{sys.version_info[1]}"


def converter_python(progress: bool = True) -> Path:
    """The Python that runs the LiteRT converter, set up first if needed (module docstring)."""
    chosen = os.environ.get("EASTMIR_CONVERTER_PYTHON")
    if chosen:
        if not Path(chosen).is_file():
            raise RunError(f"EASTMIR_CONVERTER_PYTHON={chosen}: no such file; unset it or name a Python")
        return Path(chosen)
    home = converter_home()
    python = home / "bin" / "python"
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two exports at once set it up once
        if (home / ".complete").is_file():
            return python
        shutil.rmtree(home, ignore_errors=True)  # an interrupted set-up starts again
        if progress:
            print(f"eastmir: setting up the LiteRT converter in {home} (once; {LITERT_TORCH})", file=sys.stderr)
        _run([sys.executable, "-m", "venv", str(home)], home)
        site = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        ours = Path(torch.__file__).parent.parent  # the folder this torch is installed in
        (site / "eastmir-torch.pth").write_text(f"{ours}\n{sysconfig.get_paths()['platlib']}\n")
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", LITERT_TORCH], home)
        (home / ".complete").write_text(LITERT_TORCH + "\n")
    return python


def _run(command: list[str], home: Path) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["(nothing)"])[-1]
        raise RunError(
            f"could not set up the LiteRT converter in {home}: {said}; it needs a package registry once "
            f"(or set EASTMIR_CONVERTER_PYTHON to a Python with {LITERT_TORCH} and torch {torch.__version__})"
        )


def run_worker(*arguments: str) -> None:
    """Run :mod:`eastmir.inference.litert_worker` in the converter's Python; its last error line on failure."""
    python = converter_python()
    done = subprocess.run([str(python), str(WORKER), *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        said = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["(nothing)"]
        raise RunError(f"the LiteRT converter failed: {said[-1]}")
