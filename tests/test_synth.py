import numpy as np
import pytest

from eastmir.data.datasets.synth import (
    CLASSES,
    INSTRUMENTS,
    Part,
    SynthConfig,
    plan_clip,
    prepare,
    render_clip,
    render_part,
)
from eastmir.data.datasets.synth_music import Note
from eastmir.data.manifest import load_manifest


def test_at_least_twelve_openmic_classes():
    openmic = {
        "accordion",
        "banjo",
        "bass",
        "cello",
        "clarinet",
        "cymbals",
        "drums",
        "flute",
        "guitar",
        "mallet_percussion",
        "mandolin",
        "organ",
        "piano",
        "saxophone",
        "synthesizer",
        "trombone",
        "trumpet",
        "ukulele",
        "violin",
        "voice",
    }
    assert len(CLASSES) >= 12 and set(CLASSES) <= openmic


@pytest.mark.parametrize("label", ["piano", "drums", "flute", "bass"])
def test_one_instrument_clip_is_audible_and_labelled_exactly(tmp_path, label):
    manifest = prepare(
        tmp_path / label,
        progress=False,
        n_clips=3,
        clip_seconds=2.0,
        classes=[label, "violin", "organ"],
        min_instruments=1,
        max_instruments=1,
        label_rate=1.0,
        seed=5,
    )
    for clip in manifest.clips:
        present = [p["class"] for p in clip.source["parts"]]
        assert len(present) == 1
        expected = np.array([1.0 if c == present[0] else 0.0 for c in manifest.classes])
        assert np.array_equal(clip.labels, expected)
        assert clip.mask.all()
    import soundfile as sf

    first = next(c for c in manifest.clips)
    audio, sr = sf.read(str(manifest.audio_file(first)))
    assert sr == 16000 and len(audio) == 32000
    assert np.sqrt(np.mean(audio**2)) > 0.01


def test_rendered_part_is_silent_without_notes_and_loud_with():
    part = Part("piano", 0, "melody", 0.0, [Note(0.1, 0.8, 60, 100)])
    audio = render_part(part, 1.0, 16000)
    assert audio.shape == (16000,)
    assert np.abs(audio[:1000]).max() < 1e-6  # before the note-on at 0.1 s
    assert np.abs(audio[2000:12000]).max() > 0.05
    silent = render_part(Part("piano", 0, "melody", 0.0, []), 1.0, 16000)
    assert np.abs(silent).max() == 0.0


def test_deterministic_from_seed():
    cfg = SynthConfig(n_clips=4, clip_seconds=1.0, seed=11)
    a, pa = render_clip(cfg, 2)
    b, pb = render_clip(cfg, 2)
    assert np.array_equal(a, b) and [p.label for p in pa] == [p.label for p in pb]
    c, _ = render_clip(SynthConfig(n_clips=4, clip_seconds=1.0, seed=12), 2)
    assert not np.array_equal(a, c)


def test_music_has_structure():
    cfg = SynthConfig(n_clips=50, clip_seconds=4.0)
    counts = [len(plan_clip(cfg, i)) for i in range(50)]
    assert min(counts) >= 1 and max(counts) <= 3 and len(set(counts)) > 1
    roles = {p.role for i in range(50) for p in plan_clip(cfg, i)}
    assert {"melody", "chords", "bass", "groove", "arpeggio"} <= roles
    for i in range(10):
        for part in plan_clip(cfg, i):
            inst = INSTRUMENTS[part.label]
            assert all(inst.low <= n.key <= inst.high or inst.is_drums for n in part.notes)
            assert len({n.velocity for n in part.notes}) > 1 or len(part.notes) < 3


def test_small_synth_manifest(small_synth):
    m = small_synth
    assert m.classes == CLASSES
    splits = {s: len(m.split(s)) for s in ("train", "valid", "test")}
    assert sum(splits.values()) == 96 and all(splits.values())
    labels, mask = m.labels()
    rate = mask.mean()
    assert 0.6 < rate < 0.8  # label_rate 0.7: OpenMIC-style partial labels
    assert ((labels == 1) | (labels == 0)).all()
    reread = load_manifest(m.root / "manifest.json")
    assert [c.clip_id for c in reread.clips] == [c.clip_id for c in m.clips]


def test_prepare_resumes_and_refuses_other_settings(tmp_path):
    root = tmp_path / "s"
    prepare(root, progress=False, n_clips=4, clip_seconds=1.0)
    (root / "manifest.json").unlink()
    victim = root / "audio" / "synth1.wav"
    mtime = (root / "audio" / "synth0.wav").stat().st_mtime_ns
    victim.unlink()  # as if interrupted before this clip
    manifest = prepare(root, progress=False, n_clips=4, clip_seconds=1.0)
    assert victim.exists() and len(manifest.clips) == 4
    assert (root / "audio" / "synth0.wav").stat().st_mtime_ns == mtime  # kept, not re-rendered
    with pytest.raises(ValueError, match="other settings"):
        prepare(root, progress=False, n_clips=5, clip_seconds=1.0)


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown classes"):
        prepare(tmp_path, progress=False, classes=["kazoo"])
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n_clipz'\]; valid: n_clips"):
        prepare(tmp_path, progress=False, n_clipz=3)
