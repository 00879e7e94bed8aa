"""How a store-filling job runs, as one value passed down (not eight positional arguments)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ExtractionSettings:
    """The settings of ``eastmir extract`` (and of a run's own extraction).

    ``batch_size`` clips per step; ``on_error``: ``raise`` stops at the first
    unreadable clip, ``skip`` reports and leaves it out; ``workers`` loader
    processes decode the audio while the teacher runs; ``devices`` /
    ``strategy`` / ``accelerator`` / ``num_nodes`` spread the batches over
    ranks as Lightning's Trainer takes them.
    """

    batch_size: int = 8
    on_error: Literal["raise", "skip"] = "raise"
    progress: bool = True
    workers: int = 0
    devices: int | str = 1
    strategy: str = "auto"
    accelerator: str = "cpu"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 0 or self.num_nodes < 1:
            raise ValueError("batch_size and num_nodes must be at least 1, workers at least 0")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be raise or skip, got {self.on_error!r}")
