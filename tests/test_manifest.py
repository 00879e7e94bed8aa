import json

import pytest

from eastmir.data.manifest import ManifestError, load_manifest


def write(tmp_path, clips, classes=("a", "b")):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"dataset": "x", "classes": list(classes), "clips": clips}))
    return path


def clip(cid="c1", **kw):
    row = {"clip_id": cid, "audio_path": "a.wav", "split": "train", "labels": [1.0, 0.0], "mask": [True, False]}
    row.update(kw)
    return row


def test_valid_manifest_loads(tmp_path):
    m = load_manifest(write(tmp_path, [clip(), clip("c2", split="test")]))
    assert [c.clip_id for c in m.split("test")] == ["c2"]
    assert m.audio_file(m.clips[0]) == tmp_path / "a.wav"


@pytest.mark.parametrize(
    "rows,message",
    [
        ([clip(labels=[1.0])], "expected 2 classes"),
        ([clip(split="dev")], "split 'dev'"),
        ([clip(), clip()], "duplicate clip_id"),
        ([{"clip_id": "z", "split": "train"}], "missing field 'audio_path'"),
    ],
)
def test_malformed_manifest_errors_name_file_and_clip(tmp_path, rows, message):
    path = write(tmp_path, rows)
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(path)
    assert str(path) in str(info.value)


def test_missing_manifest_says_what_to_run(tmp_path):
    with pytest.raises(ManifestError, match="eastmir data prepare"):
        load_manifest(tmp_path)
