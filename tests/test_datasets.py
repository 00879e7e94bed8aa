"""Dataset adapters on small fixtures in the official layouts (built in tmp)."""

import csv
import json
import shutil

import numpy as np
import pytest

from eastmir.data.manifest import ManifestError
from eastmir.registry import DATASETS


def test_openmic_layout_split_and_vggish_export(tmp_path, data_dir):
    keys = [f"00{i:04d}_{i * 10}" for i in range(20)]
    classes = json.loads((data_dir / "openmic" / "class-map.json").read_text())
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 10, 128), dtype=np.uint8)
    y = rng.random((20, 20)).astype(np.float32)
    m = rng.random((20, 20)) < 0.3
    np.savez(tmp_path / "openmic-2018.npz", X=x, Y_true=y, Y_mask=m, sample_key=np.array(keys))
    shutil.copy(data_dir / "openmic" / "class-map.json", tmp_path)
    (tmp_path / "partitions").mkdir()
    (tmp_path / "partitions" / "split01_train.csv").write_text("\n".join(keys[:14]) + "\n")
    (tmp_path / "partitions" / "split01_test.csv").write_text("\n".join(keys[14:]) + "\n")
    for k in keys:
        (tmp_path / "audio" / k[:3]).mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / "openmic" / "000046_3840.ogg", tmp_path / "audio" / k[:3] / f"{k}.ogg")
    with pytest.raises(
        ManifestError, match=r"2223 of the authors' 2223 validation keys are not in .*valid_split: seeded"
    ):
        DATASETS.get("openmic").prepare(tmp_path)  # not the release: its keys are not the authors'
    manifest = DATASETS.get("openmic").prepare(tmp_path, valid_split="seeded", labels="confidence")
    assert manifest.classes == sorted(classes, key=classes.get)
    counts = {s: len(manifest.split(s)) for s in ("train", "valid", "test")}
    assert counts == {"train": 12, "valid": 2, "test": 6}  # 15 % of train held out
    clip = next(c for c in manifest.clips if c.clip_id == keys[3])
    assert np.allclose(clip.labels, y[3]) and np.array_equal(clip.mask, m[3])
    assert np.array_equal(np.load(tmp_path / "embeddings" / "vggish" / f"{keys[3]}.npy"), x[3])
    (tmp_path / "audio" / keys[0][:3] / f"{keys[0]}.ogg").unlink()  # 1 of 20: reported and left out
    assert len(DATASETS.get("openmic").prepare(tmp_path, progress=False, valid_split="seeded").clips) == 19
    assert f"audio/{keys[0][:3]}/{keys[0]}.ogg,,{keys[0]},missing file," in (tmp_path / "excluded.csv").read_text()
    (tmp_path / "audio" / keys[1][:3] / f"{keys[1]}.ogg").unlink()  # 2 of 20 = 10 % > max_bad_fraction
    with pytest.raises(ManifestError, match=r"2 of 20 rows \(10%\) cannot be used"):
        DATASETS.get("openmic").prepare(tmp_path, progress=False, valid_split="seeded")


def test_magnatagatune_top_tags_drop_and_folder_split(tmp_path):
    rng = np.random.default_rng(1)
    tags = [f"tag{i}" for i in range(60)]
    rows = []
    for i, folder in enumerate("0123456789abcdef" * 2):
        labels = (rng.random(60) < (np.linspace(0.9, 0.05, 60))).astype(int)
        if i == 0:
            labels[:] = 0  # no tag at all: dropped
        rows.append([str(i)] + [str(v) for v in labels] + [f"{folder}/clip{i}.mp3"])
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / f"clip{i}.mp3").write_bytes(b"")
    with open(tmp_path / "annotations_final.csv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["clip_id", *tags, "mp3_path"])
        w.writerows(rows)
    manifest = DATASETS.get("magnatagatune").prepare(tmp_path, split="folders")
    counts = np.array([[int(v) for v in r[1:-1]] for r in rows]).sum(0)
    assert len(manifest.classes) == 50 and set(manifest.classes) == {
        tags[i] for i in np.argsort(-counts, kind="stable")[:50]
    }
    assert "0" not in {c.clip_id for c in manifest.clips}
    splits = {c.audio_path[0]: c.split for c in manifest.clips}
    assert (
        splits["c"] == "valid" and splits["e"] == splits["f"] == "test" and splits["5"] == "train" and "d" not in splits
    )


def test_esc50_folds_single_label(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "audio").mkdir()
    with open(tmp_path / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for i in range(10):
            name = f"{i % 5 + 1}-{i}-A-{i % 3}.wav"
            w.writerow([name, i % 5 + 1, i % 3, ["dog", "rain", "bell"][i % 3], "False", i, "A"])
            (tmp_path / "audio" / name).write_bytes(b"")
    manifest = DATASETS.get("esc50").prepare(tmp_path, test_fold=2)
    assert manifest.classes == ["dog", "rain", "bell"]
    assert {c.source["fold"] for c in manifest.split("test")} == {2}
    assert {c.source["fold"] for c in manifest.split("valid")} == {3}
    assert all(c.labels.sum() == 1 and c.mask.all() for c in manifest.clips)


def test_fma_small_three_row_header(tmp_path):
    (tmp_path / "fma_metadata").mkdir()
    header = [["", "set", "set", "track"], ["", "split", "subset", "genre_top"], ["track_id", "", "", ""]]
    body = [
        ["2", "training", "small", "Hip-Hop"],
        ["5", "validation", "small", "Rock"],
        ["10", "test", "small", "Rock"],
        ["11", "training", "medium", "Jazz"],
    ]
    with open(tmp_path / "fma_metadata" / "tracks.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(header + body)
    for tid in ("000002", "000005", "000010"):
        (tmp_path / "fma_small" / tid[:3]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "fma_small" / tid[:3] / f"{tid}.mp3").write_bytes(b"")
    manifest = DATASETS.get("fma_small").prepare(tmp_path)
    assert manifest.classes == ["Hip-Hop", "Rock"]
    assert [(c.clip_id, c.split) for c in manifest.clips] == [
        ("000002", "train"),
        ("000005", "valid"),
        ("000010", "test"),
    ]


def test_missing_dataset_files_say_what_to_download(tmp_path):
    for name in ("openmic", "magnatagatune", "esc50", "fma_small"):
        with pytest.raises(ManifestError, match="not found"):
            DATASETS.get(name).prepare(tmp_path)


def test_openmic_the_authors_way_binary_labels_and_their_validation_keys(tmp_path, data_dir):
    """Their labels: confidence > 0.5 positive, < 0.5 negative, exactly 0.5 unlabelled (the mask follows the
    confidence, not Y_mask); their validation split: the 2 223 keys they published, the rest of split01 train
    for training."""
    from eastmir.data.datasets.openmic import authors_valid_keys

    valid = authors_valid_keys()
    assert len(valid) == 2223 == len(set(valid))
    train, test = [f"999{i:03d}_0" for i in range(10)], [f"998{i:03d}_0" for i in range(5)]
    keys = valid + train + test
    y = np.full((len(keys), 20), 0.5, np.float32)
    y[:, 0], y[:, 1], y[:, 2] = 0.9, 0.1, 0.5  # positive, negative, unlabelled; the rest stay 0.5
    y[0, 3] = 0.5000001  # just above: a positive
    mask = np.zeros(y.shape, bool)  # Y_mask says nothing is labelled: their mask comes from the confidence
    x = np.zeros((len(keys), 10, 128), np.uint8)
    np.savez(tmp_path / "openmic-2018.npz", X=x, Y_true=y, Y_mask=mask, sample_key=np.array(keys))
    shutil.copy(data_dir / "openmic" / "class-map.json", tmp_path)
    (tmp_path / "partitions").mkdir()
    (tmp_path / "partitions" / "split01_train.csv").write_text("\n".join(train + valid) + "\n")
    (tmp_path / "partitions" / "split01_test.csv").write_text("\n".join(test) + "\n")
    manifest = DATASETS.get("openmic").prepare(tmp_path, check_audio=False, export_vggish=False, progress=False)
    splits = {s: sorted(c.clip_id for c in manifest.split(s)) for s in ("train", "valid", "test")}
    assert splits["valid"] == sorted(valid) and splits["train"] == sorted(train) and splits["test"] == sorted(test)
    clip = next(c for c in manifest.clips if c.clip_id == keys[0])
    assert list(clip.labels[:4]) == [1.0, 0.0, 0.0, 1.0] and list(clip.mask[:5]) == [True, True, False, True, False]
    assert set(np.unique(np.stack([c.labels for c in manifest.clips]))) <= {0.0, 1.0}


def test_magnatagatune_the_authors_split_by_clip_id(tmp_path):
    """Their released manifests' ids decide valid and test; the other clips of folders 0–b train; the rest
    (other folders, not in their lists) are left out as not in their split."""
    from eastmir.data.datasets.magnatagatune import authors_clip_ids

    valid, test = authors_clip_ids("valid"), authors_clip_ids("test")
    assert (len(valid), len(test), len(valid & test)) == (1529, 4332, 0)
    ids = {"2": "test", "6": "test", "14": "valid", "21": "valid", "3": "train", "4": None}
    assert all((i in test) == (s == "test") and (i in valid) == (s == "valid") for i, s in ids.items())
    folders = {"2": "f", "6": "3", "14": "0", "21": "c", "3": "5", "4": "d"}  # their lists, not the folders, decide
    rows = [[i, *(["1"] * 3), f"{folders[i]}/clip{i}.mp3"] for i in ids]
    with open(tmp_path / "annotations_final.csv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["clip_id", "a", "b", "c", "mp3_path"])
        w.writerows(rows)
    manifest = DATASETS.get("magnatagatune").prepare(tmp_path, n_tags=3, check_audio=False, progress=False)
    assert {c.clip_id: c.split for c in manifest.clips} == {i: s for i, s in ids.items() if s}
