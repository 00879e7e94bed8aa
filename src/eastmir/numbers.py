"""The bounded number types of eastmir: one definition of every kind of number a user gives, used by the run
config's schema, by every component's options (through their constructors' annotations, e.g. a student's
``dropout: Dropout``) and by every command-line option (:func:`eastmir.config.arguments.cli_type`), so a
count, seed, fraction or duration is checked the same way, and refused with the same line, wherever it is
given.

Each type states its bounds; the maxima are there so that a typo (``1e9`` seconds, a batch of a billion)
stops at once with a line instead of running out of memory or time.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_SEED = 2**32 - 1  # numpy's and torch's generators take seeds in [0, 2**32)
MAX_BATCH = 65_536
MAX_WORKERS = 256
MAX_THREADS = 1024
MAX_COUNT = 10**9
MAX_CLIP_SECONDS = 600.0  # a training clip of at most ten minutes (longer recordings are cut into windows)
MAX_HOP_SECONDS = 3600.0
MAX_TOP = 10_000

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]  # how many of something, at least one
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH)]
TrainingBatchSize = Annotated[int, Field(ge=2, le=MAX_BATCH)]  # BatchNorm needs two clips
Workers = Annotated[int, Field(ge=0, le=MAX_WORKERS)]  # loader processes; 0: in the main process
Threads = Annotated[int, Field(ge=1, le=MAX_THREADS)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]  # a share of something, in (0, 1]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]  # in [0, 1]
Dropout = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]  # a dropout rate, in [0, 1)
ClipSeconds = Annotated[float, Field(gt=0.0, le=MAX_CLIP_SECONDS, allow_inf_nan=False)]
HopSeconds = Annotated[float, Field(gt=0.0, le=MAX_HOP_SECONDS, allow_inf_nan=False)]
Top = Annotated[int, Field(ge=1, le=MAX_TOP)]
BlockSamples = Annotated[int, Field(ge=1, le=2**24)]  # samples per block of streamed audio (≤ 17 min at 16 kHz)
