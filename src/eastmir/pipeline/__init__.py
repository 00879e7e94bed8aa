"""The data flow as plain functions, one module per command::

    prepare ─▶ manifest ─▶ features ─▶ store (student inputs) ─┐
                  │                                           ├─▶ fit ─▶ run directory
                  └──────▶ extract ──▶ store (embeddings) ─────┘
                                                     pack ─▶ shards ─▶ fit (data.stream)

- :mod:`~eastmir.pipeline.prepare` (``eastmir data prepare``) writes a
  dataset's manifest once; everything later reads it from ``data.root`` and
  never rewrites it.
- :mod:`~eastmir.pipeline.features` (``eastmir features``) and
  :mod:`~eastmir.pipeline.extract` (``eastmir extract``) fill the one store
  (:mod:`eastmir.data.store`) with what is missing, keyed by settings and
  source-file identity; they are safe to interrupt and run again.
- :mod:`~eastmir.pipeline.rundata` is what ``fit`` trains on: it runs the
  stages the run needs (:mod:`~eastmir.pipeline.stages`: what is stored is
  only read) through the functions the commands call (:func:`run_data`).
- :mod:`~eastmir.pipeline.recorded` finds a run's embeddings by the teacher request that made them, so a
  run on a complete store never loads (or downloads) its teacher.
- :mod:`~eastmir.pipeline.pack` (``eastmir pack``) writes a run's clips as
  shards to stream from object storage.
- :mod:`~eastmir.pipeline.fit` (``eastmir fit``) trains and tests one run:
  data, trainer and evaluation are single calls into :mod:`eastmir.training`.

Every function takes the frozen :class:`~eastmir.config.RunConfig`. Only
``fit`` and a network teacher's ``extract`` import Lightning, through
:mod:`eastmir.training` (``eastmir features`` does not); the command line
reaches datasets, the store and teachers only through these functions.
"""

from eastmir.data.jobs import ExtractionSettings
from eastmir.pipeline.extract import (
    build_teacher,
    embedding_producer,
    extract,
    extract_with,
    teacher_catalogue,
)
from eastmir.pipeline.features import features, open_store, store_at
from eastmir.pipeline.fit import fit  # imports Lightning only when called
from eastmir.pipeline.pack import pack
from eastmir.pipeline.prepare import load_dataset, open_dataset, prepare
from eastmir.pipeline.recorded import record_request, record_requests, recorded_embeddings
from eastmir.pipeline.rundata import RunData, clip_seconds, run_data

__all__ = [
    "ExtractionSettings",
    "RunData",
    "build_teacher",
    "clip_seconds",
    "embedding_producer",
    "extract",
    "extract_with",
    "features",
    "fit",
    "load_dataset",
    "open_dataset",
    "open_store",
    "pack",
    "prepare",
    "record_request",
    "record_requests",
    "recorded_embeddings",
    "run_data",
    "store_at",
    "teacher_catalogue",
]
