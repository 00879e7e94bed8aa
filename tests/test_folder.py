"""The `folder` dataset: your own audio and a CSV, both layouts, every bad row reported."""

import csv
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from eastmir import pipeline
from eastmir.cli import main
from eastmir.errors import ManifestError

FORMATS = [("wav", 16000, 1), ("flac", 22050, 2), ("ogg", 44100, 1), ("mp3", 32000, 2)]
TONES = {"piano": 220.0, "voice": 880.0, "drums": None}  # drums: noise bursts


def render(path, classes, seconds, sr, channels, rng):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.01 * rng.standard_normal(len(t))
    for name in classes:
        if TONES[name]:
            x += 0.3 * np.sin(2 * np.pi * TONES[name] * t)
        else:
            x += 0.3 * rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 2 * t) > 0.8)
    sf.write(path, np.repeat(x[:, None], channels, axis=1).astype(np.float32), sr)


def make_folder(root, layout="labels", n=40, split_column=False, single=False, seed=0):
    """``n`` clips in all four formats, rates and channel counts, 2–3.5 s, and their CSV."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    combos = (
        [["piano"], ["voice"], ["drums"]] if single else [["piano"], ["voice"], ["piano", "drums"], ["voice", "drums"]]
    )
    rows = []
    for i in range(n):
        ext, sr, channels = FORMATS[i % 4]
        classes = combos[i % len(combos)]
        rel = f"audio/clip{i:02d}.{ext}"
        render(root / rel, classes, 2.0 + 0.5 * (i % 4), sr, channels, rng)
        split = ["train"] * 6 + ["valid"] * 2 + ["test"] * 2
        extra = [split[i % 10]] if split_column else []
        if layout == "labels":
            rows.append([rel, ";".join(classes), *extra])
        else:
            cells = ["1" if c in classes else ("" if (i + j) % 5 == 0 else "0") for j, c in enumerate(TONES)]
            rows.append([rel, *cells, f"artist{i % 3}", *extra])
    header = ["path", "labels"] if layout == "labels" else ["filename", *TONES, "artist"]
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header + (["split"] if split_column else []))
        writer.writerows(rows)
    return rows


def splits_of(manifest):
    return {c.clip_id: c.split for c in manifest.clips}


def test_labels_column_all_formats_and_a_seeded_stratified_split(tmp_path):
    make_folder(tmp_path / "a")
    manifest = pipeline.prepare("folder", tmp_path / "a", {}, progress=False)
    assert manifest.classes == ["drums", "piano", "voice"] and manifest.task == "multilabel"
    assert len(manifest.clips) == 40 and all(c.mask.all() for c in manifest.clips)
    for i, clip in enumerate(sorted(manifest.clips, key=lambda c: c.clip_id)):
        nominal = 2.0 + 0.5 * (i % 4)
        assert abs(clip.duration - nominal) < (0.1 if clip.audio_path.endswith(".mp3") else 1e-6)  # mp3: codec delay
    for split in ("train", "valid", "test"):
        labels, _ = manifest.labels(manifest.split(split))
        assert (labels.sum(axis=0) > 0).all(), f"a class is missing from {split}"
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "manifest.json").unlink()
    again = pipeline.prepare("folder", tmp_path / "b", {}, progress=False)
    assert splits_of(again) == splits_of(manifest)  # the same split on every run
    other_seed = pipeline.prepare("folder", tmp_path / "b", {"seed": 1}, progress=False)
    assert splits_of(other_seed) != splits_of(manifest)


def test_one_column_per_class_with_blanks_a_split_column_and_a_metadata_column(tmp_path, capsys):
    rows = make_folder(tmp_path, layout="columns", split_column=True)
    manifest = pipeline.prepare("folder", tmp_path, {}, progress=False)
    assert manifest.classes == ["piano", "voice", "drums"]  # column order
    assert "columns artist hold no 1/0/blank values" in capsys.readouterr().out
    blanks = sum(int((~c.mask).sum()) for c in manifest.clips)
    assert blanks == sum(cell == "" for row in rows for cell in row[1:4]) > 0
    counts = {s: len(manifest.split(s)) for s in ("train", "valid", "test")}
    assert counts == {"train": 24, "valid": 8, "test": 8}  # as the split column says


def test_single_label_is_detected_and_can_be_overridden(tmp_path):
    make_folder(tmp_path / "s", single=True)
    assert pipeline.prepare("folder", tmp_path / "s", {}, progress=False).task == "single_label"
    forced = pipeline.prepare("folder", tmp_path / "s", {"task": "multilabel"}, progress=False)
    assert forced.task == "multilabel"


def bad_case(root, case):
    """Add one bad row of kind ``case`` to a good 40-clip folder; returns the expected reason and file."""
    rows = make_folder(root, n=40)
    audio = root / "audio"
    line = {
        "wrong column count": ["audio/clip00.wav", "piano", "surplus"],
        "empty path": ["", "piano"],
        "duplicate clip": ["audio/clip01.flac", "voice"],
        "path leaves the root (..)": ["../outside.wav", "piano"],
        "path leaves the root (absolute)": [str(root.parent / "elsewhere" / "clip02.ogg"), "piano"],
        "path leaves the root (symlink)": ["audio/link.wav", "piano"],
        "missing file": ["audio/nothere.wav", "piano"],
        "zero-length audio": ["audio/empty.wav", "piano"],
        "undecodable audio": ["audio/garbage.mp3", "piano"],
        "truncated audio": ["audio/truncated.flac", "piano"],
        "non-finite samples": ["audio/nan.wav", "piano"],
        "label not in the class list": ["audio/extra.wav", "kazoo"],
    }[case]
    if case == "path leaves the root (..)":
        sf.write(root.parent / "outside.wav", np.zeros(32000, np.float32), 16000)
    if case == "path leaves the root (symlink)":
        sf.write(root.parent / "elsewhere.wav", np.zeros(32000, np.float32), 16000)
        os.symlink(root.parent / "elsewhere.wav", audio / "link.wav")
    if case == "zero-length audio":
        sf.write(audio / "empty.wav", np.zeros(0, np.float32), 16000)
    if case == "undecodable audio":
        (audio / "garbage.mp3").write_bytes(b"ID3 this is not an mp3 at all" * 10)
    if case == "truncated audio":
        sf.write(audio / "full.flac", np.random.default_rng(0).standard_normal(48000).astype(np.float32) * 0.1, 16000)
        blob = (audio / "full.flac").read_bytes()
        (audio / "truncated.flac").write_bytes(blob[:200])
    if case == "non-finite samples":
        x = np.zeros(32000, np.float32)
        x[100] = np.nan
        sf.write(audio / "nan.wav", x, 16000, subtype="FLOAT")
    if case == "label not in the class list":
        sf.write(audio / "extra.wav", np.zeros(32000, np.float32), 16000)
    with open(root / "labels.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(line)
    return line[0], len(rows) + 2  # header on line 1, the 40 rows on 2–41, the bad one on 42


CASES = [
    "wrong column count",
    "empty path",
    "duplicate clip",
    "path leaves the root (..)",
    "path leaves the root (absolute)",
    "path leaves the root (symlink)",
    "missing file",
    "zero-length audio",
    "undecodable audio",
    "truncated audio",
    "non-finite samples",
    "label not in the class list",
]


@pytest.mark.parametrize("case", CASES)
def test_every_bad_row_gets_a_line_and_nothing_else_is_lost(tmp_path, case):
    root = tmp_path / "data"
    file, line = bad_case(root, case)
    options = {"classes": ["drums", "piano", "voice"]} if case == "label not in the class list" else {}
    manifest = pipeline.prepare("folder", root, options, progress=False)
    assert len(manifest.clips) == 40  # every good clip is still there
    with open(root / "excluded.csv", newline="") as fh:
        excluded = list(csv.DictReader(fh))
    assert len(excluded) == 1, excluded
    row = excluded[0]
    reason = {"truncated audio": "undecodable audio"}.get(case, case.split(" (")[0])
    assert row["reason"] == reason and row["file"] == file.replace("\\", "/") and int(row["line"]) == line


def test_too_many_bad_rows_stop_prepare_and_leave_no_manifest(tmp_path):
    make_folder(tmp_path, n=12)
    pipeline.prepare("folder", tmp_path, {}, progress=False)
    with open(tmp_path / "labels.csv", "a", newline="") as fh:
        csv.writer(fh).writerows([[f"audio/gone{i}.wav", "piano"] for i in range(3)])  # 3 of 15 = 20 % > 5 %
    with pytest.raises(ManifestError, match=r"3 of 15 rows \(20%\) cannot be used, more than max_bad_fraction = 0.05"):
        pipeline.prepare("folder", tmp_path, {}, progress=False)
    assert not (tmp_path / "manifest.json").exists() and (tmp_path / "excluded.csv").exists()
    assert len(pipeline.prepare("folder", tmp_path, {"max_bad_fraction": 0.25}, progress=False).clips) == 12


def test_a_missing_path_column_says_how_to_name_it(tmp_path):
    make_folder(tmp_path, n=4)
    text = (tmp_path / "labels.csv").read_text().replace("path,labels", "where,labels", 1)
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(ManifestError, match=r"no path column .*--set path_column=NAME; columns: where, labels"):
        pipeline.prepare("folder", tmp_path, {}, progress=False)
    assert len(pipeline.prepare("folder", tmp_path, {"path_column": "where"}, progress=False).clips) == 4


@pytest.mark.parametrize("single", [False, True], ids=["multilabel", "single-label"])
def test_fit_trains_on_a_folder(tmp_path, single):
    make_folder(tmp_path / "mine", n=36, single=single)
    assert main(["data", "prepare", "folder", "--root", str(tmp_path / "mine"), "--no-progress"]) == 0
    overrides = [f"data.root={tmp_path / 'mine'}", "data.clip_seconds=2.5", "trainer.max_epochs=2"]
    assert (
        main(
            [
                "fit",
                "--config",
                "folder/baseline",
                "--workdir",
                str(tmp_path / "w"),
                "--no-progress",
                "--set",
                *overrides,
            ]
        )
        == 0
    )
    (run,) = (tmp_path / "w" / "runs").glob("folder-*-baseline")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == ({"accuracy"} if single else {"mAP", "roc_auc", "f1"})
    assert sum(metrics["n_clips"].values()) == 36


def test_the_readme_five_commands_with_a_teacher(tmp_path):
    make_folder(tmp_path / "mine", n=24)
    w, root = str(tmp_path / "w"), str(tmp_path / "mine")
    common = ["--workdir", w, "--no-progress"]
    short = ["data.clip_seconds=2.0", "trainer.max_epochs=1"]
    assert main(["data", "prepare", "folder", "--root", root, "--set", "csv=labels.csv", "--no-progress"]) == 0
    assert main(["extract", "--teacher", "aisfx", "--dataset", root, *common]) == 0
    for config in ("folder/baseline", "folder/east_final-aisfx"):
        assert main(["fit", "--config", config, *common, "--set", f"data.root={root}", *short]) == 0
    data_id = hashlib.sha256((tmp_path / "mine" / "manifest.json").read_bytes()).hexdigest()[:8]
    runs = [f"{w}/runs/folder-{data_id}-baseline", f"{w}/runs/folder-{data_id}-east_final-aisfx"]
    assert main(["report", *runs]) == 0


def test_runs_on_two_folders_in_one_workdir_never_share_a_name_or_a_kd_head(tmp_path):
    """The folder recipe names its runs after the data's manifest: another folder, or the same folder prepared
    again with other labels, is another run; KD reads the TeacherLR run of its own data."""
    from eastmir.config import load_config

    make_folder(tmp_path / "one", n=12)
    make_folder(tmp_path / "two", n=16)
    for root in ("one", "two"):
        pipeline.prepare("folder", tmp_path / root, {}, progress=False)

    def kd(root: str):
        return load_config("folder/kd-aisfx", [f"data.root={tmp_path / root}"], workdir=tmp_path / "w")

    one, two = kd("one"), kd("two")
    assert one.name != two.name and one.kd.teacher_run != two.kd.teacher_run
    for config, root in ((one, "one"), (two, "two")):
        data_id = hashlib.sha256((tmp_path / root / "manifest.json").read_bytes()).hexdigest()[:8]
        assert config.name == f"folder-{data_id}-kd-aisfx"
        assert config.kd.teacher_run == str(tmp_path / "w" / "runs" / f"folder-{data_id}-teacher_lr-aisfx")
    assert kd("one").name == one.name  # the same data: the same run, resumed or found finished
    labels = tmp_path / "one" / "labels.csv"
    labels.write_text(labels.read_text().replace("piano", "organ"))
    pipeline.prepare("folder", tmp_path / "one", {}, progress=False)
    assert kd("one").name != one.name  # relabelled: another run


def test_a_clip_length_too_short_for_the_student_is_named(tmp_path):
    from eastmir.errors import ConfigError

    make_folder(tmp_path / "mine", n=12)
    pipeline.prepare("folder", tmp_path / "mine", {}, progress=False)
    from eastmir.config import load_config

    cfg = load_config("folder/baseline", [f"data.root={tmp_path / 'mine'}", "data.clip_seconds=1.0"], workdir=tmp_path)
    with pytest.raises(ConfigError, match=r"1 s gives 50 input frames, but mobile_fcn needs at least 96"):
        pipeline.fit(cfg, progress=False)
