"""``synth``: an OpenMIC-like multi-label instrument dataset rendered offline.

Clips are rendered from the General-MIDI SoundFont that ``pretty_midi``
ships (``TimGM6mb.sf2``) with ``tinysoundfont``. Each clip has a key, a
tempo and a chord progression; 1–3 instruments (configurable) play a musical role in it
(melody, chords, arpeggio, bass line, drum groove) with varied velocity,
register and loudness, over background noise. Every class name is one of
OpenMIC-2018's; labels are partial like OpenMIC's: each class is labelled
(positive or negative) with probability ``label_rate`` and masked otherwise.

Everything is a pure function of ``(seed, clip index)``, so rendering is
deterministic and resumes after interruption.

Example::

    eastmir data prepare synth --root DIR --set n_clips=500 clip_seconds=4
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from eastmir.data.datasets.base import Dataset
from eastmir.data.datasets.synth_music import (
    CLASSES,
    DRUM_CHANNEL,
    INSTRUMENTS,
    MAJOR,
    MINOR,
    PROGRESSIONS,
    Part,
    compose,
    triad,
)
from eastmir.data.manifest import MANIFEST_NAME, Clip, Manifest, load_manifest, written
from eastmir.errors import ConfigError
from eastmir.fetch import atomic_write, atomic_writer
from eastmir.numbers import ClipSeconds, Count, Seed
from eastmir.registry import DATASETS


@dataclass
class SynthConfig:
    """Settings of the ``synth`` dataset (all overridable from the CLI/config)."""

    n_clips: Count = 800
    clip_seconds: ClipSeconds = 3.0
    sample_rate: int = 16000
    seed: Seed = 0
    min_instruments: int = 1
    max_instruments: int = 3
    label_rate: float = 0.7
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    gain_db: tuple[float, float] = (-8.0, 0.0)  # loudness of each instrument stem
    snr_db: tuple[float, float] = (20.0, 40.0)  # mix to background noise
    classes: list[str] = field(default_factory=lambda: list(CLASSES))

    def __post_init__(self) -> None:
        # one spelling per value, so `clip_seconds=3` and `3.0` are the same dataset
        self.n_clips, self.sample_rate, self.seed = int(self.n_clips), int(self.sample_rate), int(self.seed)
        self.min_instruments, self.max_instruments = int(self.min_instruments), int(self.max_instruments)
        self.clip_seconds, self.label_rate = float(self.clip_seconds), float(self.label_rate)
        self.split_fractions = tuple(float(x) for x in self.split_fractions)  # type: ignore[assignment]
        self.gain_db = tuple(float(x) for x in self.gain_db)  # type: ignore[assignment]
        self.snr_db = tuple(float(x) for x in self.snr_db)  # type: ignore[assignment]
        self.classes = [str(c) for c in self.classes]
        if self.n_clips < 1 or self.clip_seconds <= 0 or self.sample_rate < 8000:
            raise ValueError("synth: need n_clips >= 1, clip_seconds > 0 and sample_rate >= 8000")
        unknown = sorted(set(self.classes) - set(INSTRUMENTS))
        if unknown:
            raise ValueError(f"synth: unknown classes {unknown}; valid: {CLASSES}")
        if not 1 <= self.min_instruments <= self.max_instruments <= len(self.classes):
            raise ValueError("synth: need 1 <= min_instruments <= max_instruments <= number of classes")
        if not 0 < self.label_rate <= 1:
            raise ValueError("synth: label_rate must be in (0, 1]")
        if abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError("synth: split_fractions must sum to 1")


def soundfont_path() -> Path:
    """The General-MIDI SoundFont shipped inside the ``pretty_midi`` package."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretty_midi's SoundFont is missing; reinstall pretty_midi")
    return path


def plan_clip(config: SynthConfig, index: int) -> list[Part]:
    """The deterministic musical plan of clip ``index``: which instruments play what."""
    rng = np.random.default_rng([config.seed, index])
    n = int(rng.integers(config.min_instruments, config.max_instruments + 1))
    labels = [str(x) for x in rng.choice(config.classes, size=n, replace=False)]
    root = 36 + int(rng.integers(0, 12))
    scale = MAJOR if rng.random() < 0.6 else MINOR
    degrees = PROGRESSIONS[int(rng.integers(0, len(PROGRESSIONS)))]
    ctx = {
        "beat": 60.0 / float(rng.uniform(80, 150)),
        "length": config.clip_seconds,
        "root": root,
        "scale": scale,
        "chords": [triad(scale, root, d) for d in degrees],
        "chord_beats": float(rng.choice([2, 4])),
    }
    parts = []
    for label in labels:
        inst = INSTRUMENTS[label]
        role = str(rng.choice(inst.roles))
        program = int(rng.choice(inst.programs))
        gain = float(rng.uniform(*config.gain_db))
        parts.append(Part(label, program, role, gain, compose(rng, label, role, inst, ctx)))
    return parts


# ------------------------------------------------------------------------ rendering


def _synth_module():
    try:
        import tinysoundfont
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "the synth dataset needs tinysoundfont: `pip install --no-deps tinysoundfont` "
            "(--no-deps: it declares pyaudio, which is only needed for live playback)"
        ) from err
    return tinysoundfont


def render_part(part: Part, seconds: float, sample_rate: int) -> np.ndarray:
    """Render one part to mono float32 ``(samples,)`` with a sample-accurate event loop."""
    tsf = _synth_module()
    synth = tsf.Synth(gain=0, samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont_path()))
    inst = INSTRUMENTS[part.label]
    channel = DRUM_CHANNEL if inst.is_drums else 0
    if inst.is_drums:
        synth.program_select(channel, sfid, 128, part.program, is_drums=True)
    else:
        synth.program_select(channel, sfid, 0, part.program)
    n_total = round(seconds * sample_rate)
    events = []
    for note in part.notes:
        on = round(note.start * sample_rate)
        off = min(round(note.end * sample_rate), n_total - 1)
        if on >= n_total - 1:
            continue
        events.append((on, 1, note.key, note.velocity))
        events.append((max(off, on + 1), 0, note.key, 0))
    events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same sample
    out = np.zeros((n_total, 2), dtype=np.float32)
    pos = 0
    for at, is_on, key, velocity in events:
        if at > pos:
            out[pos:at] = np.frombuffer(synth.generate(at - pos), dtype=np.float32).reshape(-1, 2)
            pos = at
        if is_on:
            synth.noteon(channel, key, velocity)
        else:
            synth.noteoff(channel, key)
    if pos < n_total:
        out[pos:] = np.frombuffer(synth.generate(n_total - pos), dtype=np.float32).reshape(-1, 2)
    return out.mean(axis=1)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def render_clip(config: SynthConfig, index: int) -> tuple[np.ndarray, list[Part]]:
    """Mix of all parts of clip ``index``: ``(samples,)`` float32 in [-1, 1], and its plan."""
    parts = plan_clip(config, index)
    rng = np.random.default_rng([config.seed, index, 1])
    mix = np.zeros(round(config.clip_seconds * config.sample_rate), dtype=np.float64)
    for part in parts:
        stem = render_part(part, config.clip_seconds, config.sample_rate)
        mix += stem / _rms(stem) * 0.1 * 10 ** (part.gain_db / 20)
    noise = rng.standard_normal(mix.shape[0])
    if rng.random() < 0.5:  # pink-ish: a first-order low-pass of white noise
        noise = np.cumsum(noise) * 0.05
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
    snr = rng.uniform(*config.snr_db)
    mix += noise / _rms(noise) * _rms(mix) * 10 ** (-snr / 20)
    peak = np.abs(mix).max()
    if peak > 0.99:
        mix *= 0.99 / peak
    return mix.astype(np.float32), parts


def _split_of(config: SynthConfig, index: int) -> str:
    order = np.random.default_rng([config.seed, 2**31]).permutation(config.n_clips)
    rank = int(np.nonzero(order == index)[0][0]) / config.n_clips
    f_train, f_valid, _ = config.split_fractions
    return "train" if rank < f_train else "valid" if rank < f_train + f_valid else "test"


def label_vector(config: SynthConfig, index: int, present: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (classes,), mask (classes,))``: 1/0 for the labelled classes, masked otherwise."""
    rng = np.random.default_rng([config.seed, index, 3])
    labels = np.array([1.0 if c in present else 0.0 for c in config.classes], dtype=np.float32)
    mask = rng.random(len(config.classes)) < config.label_rate
    return labels, mask


def prepare(root: str | Path, progress: bool = True, **options) -> Manifest:
    """Render the dataset into ``root/audio`` and write ``root/manifest.json``.

    ``options`` are :class:`SynthConfig` fields. Already-rendered clips are
    kept, so an interrupted run resumes; preparing again with the same
    settings returns the existing manifest. A root rendered with other
    settings is refused rather than mixed.
    """
    valid = [f.name for f in fields(SynthConfig)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"synth: unknown option(s) {unknown}; valid: {', '.join(valid)}")
    try:
        config = SynthConfig(**options)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from err
    root = Path(root)
    settings_file = root / "synth_config.json"
    settings = json.dumps(asdict(config), sort_keys=True)
    rendered = (root / MANIFEST_NAME).exists() or any((root / "audio").glob("*.wav"))
    if settings_file.exists() and json.loads(settings_file.read_text()) != json.loads(settings) and rendered:
        raise ConfigError(
            f"{root}: already holds a synth dataset rendered with other settings ({settings_file}); "
            "choose another --root, or delete it"
        )
    (root / "audio").mkdir(parents=True, exist_ok=True)
    atomic_write(settings_file, settings)
    if (root / MANIFEST_NAME).exists():
        return load_manifest(root)
    clips = []
    width = len(str(config.n_clips - 1))
    for index in tqdm(range(config.n_clips), desc="render synth", unit="clip", disable=not progress):
        clip_id = f"synth{index:0{width}d}"
        rel = f"audio/{clip_id}.wav"
        path = root / rel
        parts = plan_clip(config, index)
        if not path.exists():
            audio, parts = render_clip(config, index)
            with atomic_writer(path, durable=False) as fh:
                sf.write(fh, audio, config.sample_rate, subtype="PCM_16", format="WAV")
        labels, mask = label_vector(config, index, [p.label for p in parts])
        source = {
            "parts": [
                {"class": p.label, "program": p.program, "role": p.role, "gain_db": round(p.gain_db, 2)} for p in parts
            ]
        }
        clips.append(Clip(clip_id, rel, _split_of(config, index), labels, mask, config.clip_seconds, source))
    single = config.max_instruments == 1 and config.label_rate == 1.0
    return written(Manifest("synth", list(config.classes), clips, root, "single_label" if single else "multilabel"))


@DATASETS.register("synth")
class Synth(Dataset):
    """The synthetic instrument dataset: rendered from General MIDI programs with a SoundFont; its options
    (:class:`SynthConfig`) choose classes, clip length, mixing and splits."""

    options = SynthConfig  # what `eastmir data prepare synth --set` checks
    prepare = staticmethod(prepare)
