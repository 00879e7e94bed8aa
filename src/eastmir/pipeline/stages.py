"""The stages a run needs before it trains, as values: ``fit`` asks :func:`stages_for` and runs them.

Each stage fills one store collection through the function its command
calls: :class:`FeatureStage` is ``eastmir features``
(:func:`~eastmir.pipeline.features.features`), :class:`ExtractStage` is
``eastmir extract`` (:func:`~eastmir.pipeline.extract.extract_with`). A stage
whose entries are all stored only reads them (no lock, nothing written), so
asking for every stage a run needs is asking for what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from eastmir.config import RunConfig, TeacherSection
from eastmir.data.fill import Filled
from eastmir.data.jobs import ExtractionSettings
from eastmir.data.manifest import Manifest
from eastmir.data.store import Store
from eastmir.pipeline.extract import build_teacher, extract_with
from eastmir.pipeline.features import features
from eastmir.pipeline.recorded import record_requests, recorded_embeddings


@dataclass(frozen=True)
class StageResult:
    """One stage's collection, with what the run needs to know of its producer.

    ``parts``: an ensemble teacher's member widths, in order; ``period``: the
    teacher's frame period in seconds (``None``: one vector per clip).
    """

    filled: Filled
    parts: list[int] | None = None
    period: float | None = None


class Stage(Protocol):
    """A step that fills one collection of the store for a run's clips."""

    slot: str  # "input" (what the student reads) or "embedding" (what the teacher gave)

    def run(self, manifest: Manifest, store: Store, settings: ExtractionSettings) -> StageResult | None: ...


@dataclass(frozen=True)
class FeatureStage:
    """``eastmir features`` for the run: the student's log-mels or waveforms."""

    config: RunConfig
    slot: str = "input"

    def run(self, manifest: Manifest, store: Store, settings: ExtractionSettings) -> StageResult | None:
        filled = features(self.config, manifest, store, settings.progress)
        return StageResult(filled) if filled else None


@dataclass(frozen=True)
class ExtractStage:
    """``eastmir extract`` for the run's teacher (built here, released when its embeddings are stored)."""

    section: TeacherSection
    slot: str = "embedding"

    def run(self, manifest: Manifest, store: Store, settings: ExtractionSettings) -> StageResult:
        recorded = recorded_embeddings(self.section, manifest, store)
        if recorded is not None:  # every clip's embedding is stored: the teacher is not loaded
            settings_of = recorded.filled.collection.producer.settings
            print(
                f"{self.section.label}: every clip's embedding is stored "
                f"({recorded.filled.collection.folder}); the teacher is not loaded "
                f"(weights sha256 at extraction: {str(settings_of.get('weights_sha256', 'none'))[:12]})"
            )
            return StageResult(recorded.filled, recorded.parts, recorded.period)
        teacher = build_teacher(self.section)
        filled = extract_with(teacher, manifest, store, settings)
        record_requests(store, filled.collection, self.section, teacher)
        return StageResult(filled, getattr(teacher, "parts", None), teacher.frame_seconds)


def stages_for(config: RunConfig) -> list[Stage]:
    """What ``config`` reads from the store, teacher first (its embeddings are the expensive part)."""
    stages: list[Stage] = [ExtractStage(config.teacher)] if config.teacher else []
    return [*stages, FeatureStage(config)]


def run_stages(
    stages: list[Stage], manifest: Manifest, store: Store, settings: ExtractionSettings
) -> dict[str, StageResult]:
    """``{slot: StageResult}`` of every stage that stores something, run in order."""
    results: dict[str, StageResult] = {}
    for stage in stages:
        result = stage.run(manifest, store, settings)
        if result is not None:
            results[stage.slot] = result
    return results
