"""The data flow as plain functions, one per command::

    prepare ─▶ manifest ─▶ features ─▶ store (student inputs) ─┐
                  │                                           ├─▶ fit ─▶ run directory
                  └──────▶ extract ──▶ store (embeddings) ─────┘
                                                     pack ─▶ shards ─▶ fit (data.stream)

- :func:`prepare` (``eastmir data prepare``) writes a dataset's manifest
  once; everything later reads it from ``data.root`` and never rewrites it.
- :func:`features` (``eastmir features``) and :func:`extract` (``eastmir
  extract``) fill the one store (:mod:`eastmir.data.store`) with what is
  missing, keyed by settings and source-file identity; they are safe to
  interrupt and run again. ``fit`` runs both itself (:func:`run_data`).
- :func:`pack` (``eastmir pack``) writes a run's clips as shards to stream
  from object storage.
- :func:`fit` (``eastmir fit``) trains and tests one run with Lightning.

Only :func:`fit` and a multi-process :func:`extract` import Lightning, through
:mod:`eastmir.training` (``eastmir features`` does not); the command line
reaches datasets, the store and teachers only through these functions.
"""

from eastmir.pipeline.run import fit  # imports Lightning only when called
from eastmir.pipeline.rundata import RunData, pack, run_data
from eastmir.pipeline.steps import (
    build_teacher,
    clip_seconds,
    embedding_producer,
    extract,
    features,
    load_dataset,
    open_dataset,
    open_store,
    prepare,
    store_at,
    teacher_catalogue,
)

__all__ = [
    "RunData",
    "build_teacher",
    "clip_seconds",
    "embedding_producer",
    "extract",
    "features",
    "fit",
    "load_dataset",
    "open_dataset",
    "open_store",
    "pack",
    "prepare",
    "run_data",
    "store_at",
    "teacher_catalogue",
]
