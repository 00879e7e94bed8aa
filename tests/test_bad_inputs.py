"""The bad-input corpus: every way a user's files can be wrong, and what eastmir says.

Each case asserts the exact message (it names the file or key and the
problem, on one line) or the documented skip with its report line, and that
nothing else was lost. The cases by stage:

- audio (WAV, FLAC, OGG/Vorbis, MP3): missing, empty, truncated, garbage; a
  header declaring an impossible sample rate; silence and clipping (kept,
  with a warning line);
- a whole dataset holding all of them: ``on_error: raise`` stops naming every
  bad clip and keeps the good entries; ``skip`` reports and leaves them out;
- user embedding files (``precomputed``): NaN, wrong shape, missing;
- store entries: truncated, bit-flipped;
- checkpoints: truncated, bit-flipped, holding a pickled payload;
- teacher weights: a file that is not the published one;
- configs: an unknown key, a wrong type, λ out of range, YAML with
  ``!!python/object`` tags.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eastmir.audio import AudioDecodeError, AudioQualityWarning, load_audio
from eastmir.cli import main
from eastmir.data.manifest import Manifest

SR = 16000
FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}
TONE = (0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)).astype(np.float32)

# (format, damage) → the problem as the message states it after "<path>: "
AUDIO_PROBLEMS = {
    **{(f, "missing"): "audio file not found (is the dataset root right?)" for f in FORMATS},
    **{(f, "empty"): "empty file (0 bytes); download or copy it again, or drop it from the manifest" for f in FORMATS},
    **{
        (f, "garbage"): "not decodable as audio (libsndfile: Format not recognised); re-encode the file or drop it "
        "from the manifest"
        for f in FORMATS
    },
    ("wav", "truncated"): "truncated (its header declares 64000 bytes of audio, the file holds 31978); "
    "download or copy it again",
    ("mp3", "truncated"): "truncated (its header declares 32000 samples, 12719 decode); download or copy it again",
    ("flac", "truncated"): "not decodable as audio (libsndfile: flac decoder lost sync); re-encode the file or "
    "drop it from the manifest",
    ("ogg", "truncated"): "not decodable as audio (libsndfile: Supported file format but file is malformed); "
    "re-encode the file or drop it from the manifest",
}


def bad_audio(folder: Path, fmt: str, damage: str) -> Path:
    """A file of ``fmt`` damaged as ``damage`` (for ``missing``: a path where nothing is)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{damage}.{fmt}"
    if damage == "missing":
        return path
    sf.write(path, TONE, SR, format=FORMATS[fmt][0], subtype=FORMATS[fmt][1])
    blob = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, len(blob), dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize(("fmt", "damage"), sorted(AUDIO_PROBLEMS), ids=[f"{f}-{d}" for f, d in sorted(AUDIO_PROBLEMS)])
def test_damaged_audio_is_refused_naming_the_file_and_the_problem(tmp_path, fmt, damage):
    path = bad_audio(tmp_path, fmt, damage)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, SR)
    assert str(info.value) == f"{path}: {AUDIO_PROBLEMS[fmt, damage]}"


def test_a_header_declaring_an_impossible_sample_rate_is_refused(tmp_path):
    path = tmp_path / "rate.wav"
    sf.write(path, TONE[:400], 100)  # a header that says 100 Hz
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, SR)
    assert str(info.value) == (
        f"{path}: its header declares a sample rate of 100 Hz (expected 1000-768000 Hz); the header is wrong: "
        "re-encode the file with its true rate"
    )


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_intact_audio_of_every_format_decodes_whole(tmp_path, fmt):
    path = bad_audio(tmp_path, fmt, "intact")
    audio = load_audio(path, SR)
    assert abs(len(audio) - len(TONE)) <= 1152 and np.isfinite(audio).all()  # MP3: whole frames


@pytest.mark.parametrize(
    ("signal", "problem"),
    [
        (np.zeros(SR, np.float32), "digital silence (every sample is 0); kept"),
        (np.clip(3 * TONE[:SR] / 0.3, -1, 1), "clipped (78% of samples at full scale); kept"),
    ],
    ids=["silent", "clipped"],
)
def test_silent_and_clipped_audio_are_kept_with_a_warning(tmp_path, signal, problem):
    path = tmp_path / "suspect.wav"
    sf.write(path, signal, SR, subtype="FLOAT")
    with pytest.warns(AudioQualityWarning) as caught:
        audio = load_audio(path, SR)
    assert [str(w.message) for w in caught] == [f"{path}: {problem}"]
    assert len(audio) == SR and np.isfinite(audio).all()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from eastmir import pipeline

    root = tmp_path_factory.mktemp("bad-inputs") / "clean"
    return pipeline.prepare("synth", root, {"n_clips": 12, "clip_seconds": 2.0, "seed": 5}, progress=False)


def dataset_with_bad_clips(tiny, root: Path) -> tuple[Path, dict[str, Path]]:
    """``tiny``'s 12 clips plus one clip per damaged file (16), one silent and one with an impossible rate."""
    clips = []
    for clip in tiny.clips:
        (root / clip.audio_path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny.audio_file(clip), root / clip.audio_path)
        clips.append(clip)
    bad: dict[str, Path] = {}
    template = tiny.clips[0]
    for fmt, damage in sorted(AUDIO_PROBLEMS):
        path = bad_audio(root / "bad" / fmt, fmt, damage)
        clip_id = f"{damage}-{fmt}"
        clips.append(dataclasses.replace(template, clip_id=clip_id, audio_path=str(path.relative_to(root))))
        bad[clip_id] = path
    sf.write(root / "bad" / "rate.wav", TONE[:400], 100)
    clips.append(dataclasses.replace(template, clip_id="rate", audio_path="bad/rate.wav"))
    bad["rate"] = root / "bad" / "rate.wav"
    sf.write(root / "silent.wav", np.zeros(2 * SR, np.float32), SR)
    clips.append(dataclasses.replace(template, clip_id="silent", audio_path="silent.wav"))
    Manifest("synth", tiny.classes, clips, root).save()
    return root, bad


def features(root: Path, cache: Path, on_error: str) -> int:
    return main(
        [
            "features",
            "--config",
            "synth/baseline",
            "--workdir",
            str(cache.parent),
            "--no-progress",
            "--set",
            f"data.root={root}",
            f"cache_dir={cache}",
            f"data.on_error={on_error}",
        ]
    )


def stored(cache: Path) -> int:
    return len(list((cache / "logmel").rglob("*.npy")))


def test_a_dataset_with_every_bad_clip_stops_naming_each_and_keeps_the_good_entries(tiny, tmp_path, capsys):
    root, bad = dataset_with_bad_clips(tiny, tmp_path / "data")
    cache = tmp_path / "cache"
    assert features(root, cache, "raise") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("eastmir: error:")]
    failures_file = next(cache.rglob("failures.json"))
    assert len(lines) == 1 and f"{len(bad)} clip(s) could not be used, listed in {failures_file}" in lines[0]
    assert f"(and {len(bad) - 3} more); fix or remove them, or rerun with --on-error skip" in lines[0]
    assert f"eastmir: warning: {root / 'silent.wav'}: digital silence (every sample is 0); kept" in err
    assert stored(cache) == 13  # the 12 good clips and the silent one: nothing good was lost
    failures = json.loads(failures_file.read_text())
    assert set(failures) == set(bad)
    for clip_id, path in bad.items():
        assert str(path) in str(failures[clip_id])


def test_a_dataset_with_every_bad_clip_skips_them_with_a_report_line_when_asked(tiny, tmp_path, capsys):
    root, bad = dataset_with_bad_clips(tiny, tmp_path / "data")
    cache = tmp_path / "cache"
    assert features(root, cache, "skip") == 0
    out = capsys.readouterr().out
    assert f"13 stored now, 0 already stored, {len(bad)} left out (see " in out
    assert stored(cache) == 13


# --- user embedding files (the precomputed teacher) --------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (np.full((4, 8), np.nan, np.float32), "32 of 32 values are NaN or infinite"),
        (np.zeros((4, 7), np.float32), "shape (4, 7)"),
        (None, "not found"),
    ],
    ids=["nan", "wrong-shape", "missing"],
)
def test_a_bad_embedding_file_is_named_and_never_imported(tiny, tmp_path, capsys, content, problem):
    folder = tmp_path / "embeddings"
    folder.mkdir()
    for i, clip in enumerate(tiny.clips):  # distinct files: entries are keyed by content
        np.save(folder / f"{clip.clip_id}.npy", np.full((4, 8), i + 1, np.float32))
    victim = folder / f"{tiny.clips[3].clip_id}.npy"
    if content is None:
        victim.unlink()
    else:
        np.save(victim, content)
    cache = tmp_path / "cache"
    code = main(
        [
            "extract",
            "--teacher",
            "precomputed",
            "--set",
            f"path={folder}",
            "dim=8",
            "--dataset",
            str(tiny.root),
            "--cache-dir",
            str(cache),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("eastmir: error: 1 clip(s) could not be used")
    assert str(victim) in err and problem in err
    assert len(list(cache.rglob("*.npy"))) == len(tiny.clips) - 1  # the good ones are kept


# --- store entries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_a_damaged_store_entry_is_named_with_the_way_on(tmp_path, damage):
    from eastmir.data.store import StoreError, read_entry, write_entry

    path = tmp_path / "entry.npy"
    write_entry(path, np.arange(64, dtype=np.float32).reshape(8, 8))
    blob = bytearray(path.read_bytes())
    if damage == "truncated":
        blob = blob[: len(blob) - 40]
    else:
        blob[150] ^= 0x04
    path.write_bytes(bytes(blob))
    with pytest.raises(StoreError) as info:
        read_entry(path)
    message = str(info.value)
    assert message.startswith(f"{path}: corrupted store entry (") and "delete it and rerun the command" in message


# --- checkpoints -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(small_synth, small_synth_embeddings, workdir):
    from eastmir import pipeline
    from eastmir.config import load_config

    cfg = load_config("synth/baseline", ["name=for-bad-checkpoints", "trainer.max_epochs=1"], workdir=workdir)
    return pipeline.fit(cfg, progress=False)


class Payload:
    """What a malicious checkpoint carries: unpickling it would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped", "pickled-payload"])
def test_a_damaged_or_unsafe_checkpoint_is_refused_by_predict(finished_run, small_synth, tmp_path, capsys, damage):
    import torch

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    best = run / json.loads((run / "metrics.json").read_text())["best_checkpoint"]
    marker = tmp_path / "code-ran"
    if damage == "truncated":
        best.write_bytes(best.read_bytes()[:5000])
        problem = "unreadable checkpoint ("
    elif damage == "bit-flipped":  # a byte inside a weight tensor: torch itself would load it without a word
        state = torch.load(best, weights_only=True)
        blob = bytearray(best.read_bytes())
        head = state["state_dict"]["student.head.weight"].numpy().tobytes()
        blob[bytes(blob).index(head) + 5] ^= 0x01
        best.write_bytes(bytes(blob))
        problem = "corrupted checkpoint (its contents no longer match the sha256 stored in it: a changed byte on disk)"
    else:
        state = torch.load(best, weights_only=True)
        state["callbacks"] = Payload(marker)
        torch.save(state, best)
        problem = "refused: the checkpoint holds pickled Python objects (posix.system), not only weights"
    clip = small_synth.audio_file(small_synth.clips[0])
    assert main(["predict", str(run), str(clip), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eastmir: error: {best}: {problem}") and err.count("\n") == 1
    assert not marker.exists()


# --- teacher weights -------------------------------------------------------------------------------------------


def test_a_weight_file_that_is_not_the_published_one_is_refused(tmp_path):
    from eastmir.teachers.published import PublishedWeights, verify
    from eastmir.teachers.weights import WeightsUnavailable

    path = tmp_path / "vggish.pth"
    path.write_bytes(b"not the weights")
    spec = PublishedWeights("https://example.org/vggish.pth", "vggish.pth", "sha256-prefix:abcdef12", "Apache-2.0")
    with pytest.raises(WeightsUnavailable) as info:
        verify(path, spec)
    assert str(info.value).startswith(f"{path}: sha256-prefix ") and "does not match the published abcdef12" in str(
        info.value
    )


# --- configs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainr.max_epochs=1", "unknown key trainr.max_epochs (did you mean trainer.max_epochs?)"),
        ("trainer.max_epochs=abc", "trainer.max_epochs: expected an integer, got 'abc'"),
        ("distillation.lambda=1.5", "distillation.lambda: must be at most 1.0, got 1.5"),
    ],
    ids=["unknown-key", "wrong-type", "lambda-out-of-range"],
)
def test_a_wrong_config_value_is_one_line_naming_the_key(tmp_path, capsys, override, message):
    code = main(["fit", "--config", "synth/east_final", "--workdir", str(tmp_path), "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def test_yaml_with_python_tags_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"extends: [synth/baseline]\nname: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["fit", "--config", str(evil), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eastmir: error: {evil}") and "python/object" in err and err.count("\n") == 1
    assert not marker.exists()
