"""The trip a run config takes through the code: which files the calls that receive it live in, in order.

Runs one tiny ``fit`` (synth, one epoch, 32 clips) with a profiler hook that
records every call of an eastmir function given the :class:`RunConfig` as an
argument (the config's own methods left out), then prints the files in call
order (consecutive calls in one file merged) and three counts: the files
visited, the times the trip climbs back up to a higher layer, and the times
it returns to a file it had already left. The issue that set the target
measured 21 files / 21 climbs / 40 returns before the typed config; the
target is at most 8 returns.

    .venv/bin/python tools/config_trip.py [WORKDIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "eastmir"
LAYERS = [  # pyproject's layers contract, top first
    ("cli",),
    ("demo", "experiments"),
    ("pipeline", "inference", "reporting"),
    ("training",),
    ("config",),
    ("rundir",),
    ("students", "losses", "teachers", "data"),
    ("metrics", "audio", "registry", "folding", "fetch", "filelock"),
]


def layer(path: str) -> int:
    top = Path(path).relative_to(SRC).parts[0].removesuffix(".py")
    return next((i for i, names in enumerate(LAYERS) if top in names), len(LAYERS))


def trace(config) -> list[str]:
    """The files of the calls that receive ``config`` while ``pipeline.fit(config)`` runs, in call order."""
    from eastmir import pipeline
    from eastmir.config import RunConfig

    files: list[str] = []
    own = str(SRC / "config")

    def hook(frame, event, arg):
        if event != "call":
            return
        name = frame.f_code.co_filename
        if not name.startswith(str(SRC)) or name.startswith(own):
            return
        if any(isinstance(v, RunConfig) for v in frame.f_locals.values()):
            files.append(str(Path(name).relative_to(SRC.parent)))

    sys.setprofile(hook)
    try:
        pipeline.fit(config, progress=False)
    finally:
        sys.setprofile(None)
    return files


def measure(calls: list[str]) -> tuple[list[str], int, int, int]:
    """``(trip, files visited, climbs back to a higher layer, returns to a file already left)``."""
    trip = [f for i, f in enumerate(calls) if i == 0 or f != calls[i - 1]]
    seen: set[str] = set()
    climbs = returns = 0
    for i, f in enumerate(trip):
        if i and layer(str(SRC.parent / f)) < layer(str(SRC.parent / trip[i - 1])):
            climbs += 1
        if f in seen:
            returns += 1
        seen.add(f)
    return trip, len(seen), climbs, returns


def main() -> None:
    from eastmir import pipeline
    from eastmir.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp)
        options = {"n_clips": 32, "clip_seconds": 2.0}
        pipeline.prepare("synth", workdir / "data" / "synth", options, progress=False)
        config = load_config("synth/east_final", ["trainer.max_epochs=1", "data.batch_size=8"], workdir=workdir)
        trip, files, climbs, returns = measure(trace(config))
    print("the config's trip from pipeline.fit, in call order:")
    for f in trip:
        print(f"  {f}")
    print(
        f"files visited: {files}; stays: {len(trip)}; climbs back to a higher layer: {climbs}; "
        f"returns to a file already left: {returns}"
    )


if __name__ == "__main__":
    main()
