"""eastmir: Embeddings As Teachers for music classification.

Small student networks are trained on log-mel spectrograms with
``L = (1 - λ)·L_pred + λ·L_reg``, where ``L_reg`` pulls a student feature map
towards a frozen teacher's pre-computed embedding (Ding & Lerch, ISMIR 2023).

``eastmir.load_run(RUN_DIR)`` rebuilds a trained run from its directory alone;
``eastmir.load_student(RUN_DIR).predict(waveform, sample_rate)`` scores audio.
"""

from __future__ import annotations

from typing import Any

from eastmir.version import __version__

__all__ = ["__version__", "load_run", "load_student"]


def __getattr__(name: str) -> Any:  # lazy: importing eastmir must not import torch or Lightning
    if name in ("load_run", "load_student"):
        import eastmir.inference

        return getattr(eastmir.inference, name)
    raise AttributeError(f"module 'eastmir' has no attribute {name!r}")
