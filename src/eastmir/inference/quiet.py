"""Exporting without noise: torch's exporter notes (torchvision, ``LeafSpec``, ONNX optimiser lines) kept off the
screen while eastmir exports or quantises."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Keep the exporters' progress lines, tracer notes and shape-solver logs off the screen."""
    loggers = [logging.getLogger(name) for name in ("", "torch", "torch.onnx", "torch.fx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    # torch's exporter logs "torchvision is not installed" through loggers with levels of their own
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
