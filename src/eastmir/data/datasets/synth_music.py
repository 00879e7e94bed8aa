"""The music of a ``synth`` clip: the instruments (OpenMIC-2018's class names with their General MIDI
programs, ranges and roles), and the notes each plays in its role over the clip's key, tempo and chords.

Every note is drawn from the clip's random generator in a fixed order, so a clip's notes are a pure function
of ``(seed, clip index)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DRUM_CHANNEL = 9


@dataclass(frozen=True)
class Instrument:
    """A class: the GM programs that play it, its MIDI range and musical roles."""

    programs: tuple[int, ...]
    low: int
    high: int
    roles: tuple[str, ...]
    is_drums: bool = False


# Class names are OpenMIC-2018's. GM program numbers are 0-based.
INSTRUMENTS: dict[str, Instrument] = {
    "accordion": Instrument((21, 23), 53, 84, ("chords", "melody")),
    "banjo": Instrument((105,), 48, 81, ("arpeggio", "chords")),
    "bass": Instrument((32, 33, 34), 28, 52, ("bass",)),
    "cello": Instrument((42,), 36, 67, ("melody", "bass")),
    "clarinet": Instrument((71,), 50, 84, ("melody",)),
    "drums": Instrument((0, 16, 25), 35, 59, ("groove",), is_drums=True),
    "flute": Instrument((73,), 60, 93, ("melody",)),
    "guitar": Instrument((24, 25, 26, 27), 40, 76, ("chords", "arpeggio")),
    "mallet_percussion": Instrument((11, 12, 13), 60, 88, ("arpeggio", "melody")),
    "organ": Instrument((16, 17, 19), 43, 79, ("chords", "melody")),
    "piano": Instrument((0, 1, 2), 40, 88, ("chords", "melody", "arpeggio")),
    "saxophone": Instrument((64, 65, 66), 46, 77, ("melody",)),
    "synthesizer": Instrument((80, 81, 88, 89), 40, 84, ("chords", "melody", "arpeggio")),
    "trombone": Instrument((57,), 40, 70, ("melody", "bass")),
    "trumpet": Instrument((56,), 55, 81, ("melody",)),
    "violin": Instrument((40,), 55, 91, ("melody",)),
    "voice": Instrument((52, 53), 50, 76, ("melody",)),
}
CLASSES: list[str] = sorted(INSTRUMENTS)

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 0), (5, 3, 0, 4), (0, 4, 5, 3), (1, 4, 0, 0), (0, 3, 0, 4))
KICK, SNARE, CLOSED_HAT, OPEN_HAT, RIDE, CRASH, LOW_TOM, HIGH_TOM, CLAP = 36, 38, 42, 46, 51, 49, 45, 50, 39


@dataclass
class Note:
    start: float  # seconds
    end: float
    key: int
    velocity: int


@dataclass
class Part:
    """One instrument's contribution to a clip."""

    label: str
    program: int
    role: str
    gain_db: float
    notes: list[Note]


def triad(scale: tuple[int, ...], root: int, degree: int) -> list[int]:
    """Pitch classes (as semitones above C0-ish root) of the triad on ``degree``."""
    return [root + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]


def _fit(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


@dataclass
class Voice:
    """One instrument's voice in a clip: its register window, loudness and the clip's time grid."""

    rng: np.random.Generator
    beat: float  # seconds
    length: float  # seconds
    chords: list[list[int]]
    chord_beats: float
    base_velocity: int
    low: int  # the register window, about two octaves inside the instrument's range
    high: int

    def velocity(self) -> int:
        return int(np.clip(self.base_velocity + self.rng.integers(-12, 13), 20, 127))

    def chord_at(self, t: float) -> list[int]:
        return self.chords[int(t / (self.beat * self.chord_beats)) % len(self.chords)]


def compose(rng: np.random.Generator, label: str, role: str, inst: Instrument, ctx: dict) -> list[Note]:
    """Notes for one instrument in one role, in the clip's key, tempo and chords."""
    base_vel = int(rng.integers(55, 118))
    span = inst.high - inst.low
    lo = inst.low + int(rng.integers(0, max(1, span - 24) + 1)) if span > 24 else inst.low
    hi = min(inst.high, lo + 24)
    voice = Voice(rng, ctx["beat"], ctx["length"], ctx["chords"], ctx["chord_beats"], base_vel, lo, hi)
    return ROLES[role](voice, inst, ctx)


def _groove(v: Voice, inst: Instrument, ctx: dict) -> list[Note]:
    """A drum groove: kick on 1 and 3, snare (or clap) on 2 and 4, hats, a crash, maybe a tom fill."""
    rng, beat, length, vel = v.rng, v.beat, v.length, v.velocity
    notes: list[Note] = []
    hat = CLOSED_HAT if rng.random() < 0.7 else RIDE
    sub = 2 if rng.random() < 0.7 else 4
    step = beat / sub
    for i in range(int(length / step) + 1):
        t = i * step
        pos = i % (4 * sub)
        if (pos % sub == 0 and (pos // sub) in (0, 2)) or (rng.random() < 0.12 and pos % sub == 0):
            notes.append(Note(t, t + step, KICK, vel()))
        if pos % sub == 0 and (pos // sub) in (1, 3):
            notes.append(Note(t, t + step, SNARE if rng.random() < 0.85 else CLAP, vel()))
        if rng.random() < 0.9:
            notes.append(Note(t, t + step * 0.9, hat if rng.random() < 0.9 else OPEN_HAT, max(20, vel() - 20)))
    if rng.random() < 0.5:
        notes.append(Note(0.0, beat, CRASH, vel()))
    if rng.random() < 0.3:
        t = length - beat
        for k, tom in enumerate((HIGH_TOM, LOW_TOM)):
            notes.append(Note(t + k * beat / 2, t + (k + 1) * beat / 2, tom, vel()))
    return notes


def _bass(v: Voice, inst: Instrument, ctx: dict) -> list[Note]:
    """The chords' roots (sometimes the fifth), in whole, half or double beats."""
    notes: list[Note] = []
    pattern = v.rng.choice([1.0, 2.0, 0.5])
    t = 0.0
    while t < v.length:
        root = _fit(v.chord_at(t)[0], inst.low, min(inst.high, inst.low + 14))
        key = root + (7 if v.rng.random() < 0.2 else 0)
        notes.append(Note(t, t + v.beat * pattern * 0.9, _fit(key, inst.low, inst.high), v.velocity()))
        t += v.beat * pattern
    return notes


def _chords(v: Voice, inst: Instrument, ctx: dict) -> list[Note]:
    """The chords struck together, once per chord or every one or two beats."""
    notes: list[Note] = []
    hits = v.rng.choice([v.chord_beats, 1.0, 2.0])
    t = 0.0
    while t < v.length:
        for pc in v.chord_at(t):
            notes.append(Note(t, t + v.beat * hits * 0.95, _fit(pc, v.low, v.high), v.velocity()))
        t += v.beat * hits
    return notes


def _arpeggio(v: Voice, inst: Instrument, ctx: dict) -> list[Note]:
    """The chord's notes one after another in a drawn order, alternating octaves."""
    notes: list[Note] = []
    step = v.beat / float(v.rng.choice([2, 3, 4]))
    order = v.rng.permutation(3)
    t, i = 0.0, 0
    while t < v.length:
        chord = v.chord_at(t)
        notes.append(
            Note(t, t + step * 1.5, _fit(chord[order[i % 3]] + 12 * (i // 3 % 2), v.low, v.high), v.velocity())
        )
        t += step
        i += 1
    return notes


def _melody(v: Voice, inst: Instrument, ctx: dict) -> list[Note]:
    """A random walk on the scale, leaning on chord tones, with rests."""
    notes: list[Note] = []
    scale_pitches = [p for p in range(v.low, v.high + 1) if (p - ctx["root"]) % 12 in ctx["scale"]]
    idx = int(v.rng.integers(0, len(scale_pitches)))
    t = 0.0
    while t < v.length:
        dur = v.beat * float(v.rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        if v.rng.random() < 0.15:
            t += dur  # rest
            continue
        idx = int(np.clip(idx + v.rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, len(scale_pitches) - 1))
        notes.append(Note(t, t + dur * 0.95, scale_pitches[idx], v.velocity()))
        t += dur
    return notes


ROLES: dict[str, Callable[[Voice, Instrument, dict], list[Note]]] = {
    "groove": _groove,
    "bass": _bass,
    "chords": _chords,
    "arpeggio": _arpeggio,
    "melody": _melody,
}
