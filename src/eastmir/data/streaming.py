"""Streaming a run's data from object storage, for data that outgrows one disk.

``eastmir pack --config C --out DIR`` writes a run's inputs, teacher
embeddings and labels, split by split, as WebDataset tar shards
(``DIR/<split>-000000.tar`` …) plus ``DIR/index.json``; copy ``DIR`` to a
bucket (``aws s3 sync``, ``gsutil rsync``) and train with ``data.stream:
URL`` (``s3://bucket/prefix``, ``gs://…``, ``https://…`` or a local folder):
``fit`` then reads the shards as it goes and needs neither the audio nor the
store on its disk.

WebDataset is a maintained library for exactly this (plain tar files,
sequential reads, shards split across DDP ranks and loader workers). It was
chosen over Lightning's ``litdata`` because ``litdata`` requires
``torchvision``, whose exact torch pin replaces the torch build a user
installed (on a CPU machine, with a multi-GB CUDA one).

A sample holds ``meta.json`` (clip id, labels, mask), ``input.npy`` and
``embedding.npy`` (whole clips, as in the store: the data module crops and
pads them as usual).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eastmir.errors import ManifestError
from eastmir.fetch import atomic_write
from eastmir.paths import regular_file_problem

INDEX = "index.json"


def _shard_url(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def _register_cloud_schemes() -> None:
    """Let WebDataset open ``s3://`` (and any other fsspec URL) through fsspec, when its package is installed."""
    import importlib

    import fsspec

    gopen = importlib.import_module("webdataset.gopen")  # the module (the package exports a function of that name)

    def via_fsspec(url: str, mode: str = "rb", bufsize: int = 8192, **kw: Any):
        return fsspec.open(url, mode).open()

    for scheme in ("s3", "gcs", "az", "abfs", "file"):
        gopen.gopen_schemes.setdefault(scheme, via_fsspec)


def write_shards(out: str | Path, samples: dict[str, Iterable[dict]], meta: dict, shard_size: int = 1000) -> Path:
    """Write ``samples[split]`` (dicts of ``clip_id``, ``targets``, ``mask``, ``input``, ``embedding``) as shards."""
    from webdataset import ShardWriter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = {"format": "eastmir-webdataset-1", **meta, "splits": {}}
    for split, items in samples.items():
        with ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            n = 0
            for i, item in enumerate(items):
                sample = {
                    "__key__": f"{i:09d}",
                    "meta.json": json.dumps(
                        {"clip_id": item["clip_id"], "targets": item["targets"].tolist(), "mask": item["mask"].tolist()}
                    ).encode(),
                }
                for name in ("input", "embedding"):
                    if item.get(name) is not None:
                        buffer = io.BytesIO()
                        np.save(buffer, item[name], allow_pickle=False)
                        sample[f"{name}.npy"] = buffer.getvalue()
                sink.write(sample)
                n += 1
        shards = sorted(p.name for p in out.glob(f"{split}-*.tar"))
        index["splits"][split] = {"shards": shards, "clips": n}
    atomic_write(out / INDEX, json.dumps(index, indent=1))
    return out / INDEX


def read_index(url: str) -> dict:
    """``index.json`` of a packed folder or bucket prefix."""
    import fsspec

    try:
        with fsspec.open(_shard_url(url, INDEX), "r") as fh:
            index = json.load(fh)
    except (FileNotFoundError, OSError) as err:
        raise ManifestError(f"{url}: no {INDEX} there ({err}); write one with `eastmir pack`") from err
    except ValueError as err:
        raise ManifestError(f"{url}: its {INDEX} is damaged ({err}); write it again with `eastmir pack`") from None
    if "://" not in url:
        check_local_shards(Path(url), index)
    return index


def check_local_shards(folder: Path, index: dict) -> None:
    """Every shard ``index`` names is in ``folder`` and starts as a tar file; else a line naming the first that
    is not (a missing or corrupt shard would otherwise stop training midway with a library's traceback)."""
    for split, entry in (index.get("splits") or {}).items():
        for name in entry.get("shards", []):
            path = folder / name
            problem = regular_file_problem(path)
            if problem is None and not tarfile.is_tarfile(path):
                problem = "is not a tar shard (damaged or truncated)"
            if problem:
                raise ManifestError(
                    f"{path}: shard of the {split} split {problem}; pack the data again (`eastmir pack`) or copy "
                    "the folder whole"
                )


def stream_split(
    url: str, index: dict, split: str, shuffle: int = 0, seed: int = 0, by_rank: bool = True
) -> Iterator[dict]:
    """The samples of one split as dicts of arrays, in shard order (``shuffle``: a buffer of that many);
    ``by_rank``: each DDP process reads its share of the shards (else every process reads them all)."""
    import webdataset as wds

    _register_cloud_schemes()
    urls = [_shard_url(url, name) for name in index["splits"][split]["shards"]]
    pipeline = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        nodesplitter=wds.split_by_node if by_rank else None,
        seed=seed,
        empty_check=False,
    )
    if shuffle:
        pipeline = pipeline.shuffle(shuffle)
    for sample in _reading(pipeline, url, split):
        meta = json.loads(sample["meta.json"])
        item = {
            "clip_id": meta["clip_id"],
            "targets": np.asarray(meta["targets"], np.float32),
            "mask": np.asarray(meta["mask"], bool),
        }
        for name in ("input", "embedding"):
            if f"{name}.npy" in sample:
                item[name] = np.load(io.BytesIO(sample[f"{name}.npy"]), allow_pickle=False)
        yield item


def _reading(samples: Iterable[dict], url: str, split: str) -> Iterator[dict]:
    """The samples, with a shard that breaks midway (a remote one, or one changed after the check) as one line."""
    try:
        yield from samples
    except (tarfile.ReadError, OSError, ValueError, KeyError) as err:
        detail = " ".join(str(err).split())[:200]
        raise ManifestError(
            f"{url}: a shard of the {split} split cannot be read ({type(err).__name__}: {detail}); "
            "pack the data again (`eastmir pack`)"
        ) from None
