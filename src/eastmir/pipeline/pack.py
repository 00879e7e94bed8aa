"""``eastmir pack``: a run's clips (inputs, embeddings, labels) as WebDataset shards to stream from a
folder or bucket (``data.stream``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from eastmir.config import RunConfig
from eastmir.data.manifest import SPLITS
from eastmir.data.store import read_entry
from eastmir.errors import ConfigError
from eastmir.pipeline.rundata import run_data


def pack(config: RunConfig, out: str | Path, shard_size: int = 1000, progress: bool = True) -> Path:
    """Write the run's clips (inputs, embeddings, labels) as WebDataset shards plus ``index.json`` in ``out``."""
    from eastmir.data.streaming import write_shards

    if config.data.stream:
        raise ConfigError("pack reads the store: unset data.stream")
    data = run_data(config, progress)

    def samples(split: str):
        for r in data.records[split]:
            yield {
                "clip_id": r.clip_id,
                "targets": r.targets,
                "mask": r.mask,
                "input": read_entry(r.input_entry) if r.input_entry else None,
                "embedding": read_entry(r.embedding_entry) if r.embedding_entry else None,
            }

    meta = {
        "dataset": data.dataset,
        "classes": data.classes,
        "task": data.task,
        "input_key": data.input_key,
        "frontend": asdict(config.frontend),
        "clip_seconds": data.clip_seconds,
        "embedding_dim": data.embedding_dim,
        "embedding_frames": data.embedding_frames,
        "producers": data.producers,
        "embedding_parts": data.embedding_parts,
        "embedding_period": data.embedding_period,
        "teacher": config.teacher.model_dump(mode="json") if config.teacher else None,
    }
    return write_shards(out, {split: samples(split) for split in SPLITS}, meta, shard_size)
