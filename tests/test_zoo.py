"""`eastmir zoo`: the authors' trained students, downloaded, checked, converted and used as runs.

The checkpoints here are built in the authors' exact layout (a Lightning checkpoint whose state_dict holds
their student under `student.` and the frozen TeacherLR head under `teacher.`) from the golden weights
their own code computed with (tests/data/golden), and served by a local HTTP server, so download, check,
conversion and predict run end to end and the outputs can be compared with their model's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from eastmir.cli import main
from eastmir.data.datasets.magnatagatune import magnatagatune_classes
from eastmir.inference import zoo

GOLDEN = Path(__file__).parent / "data" / "golden"
CLIP = Path(__file__).parent / "data" / "openmic" / "000046_3840.ogg"
NAME = "openmic/test-cp_resnet64"


def authors_checkpoint(path: Path, case: str = "cp_resnet", classes: int = 20, **changes) -> Path:
    """A Lightning checkpoint in the authors' layout from the golden weights of ``case``; ``changes``:
    ``rename`` (one student key renamed), ``extra`` (a key left over), ``foreign`` (a key of neither part),
    ``unsafe`` (a Python object in the hyper-parameters)."""
    golden = np.load(GOLDEN / f"{case}.npz")
    state = {
        f"student.{k.removeprefix('state.')}": torch.from_numpy(np.asarray(golden[k]))
        for k in golden.files
        if k.startswith("state.")
    }
    state["teacher.proj.weight"] = torch.randn(classes, 768)
    state["teacher.proj.bias"] = torch.zeros(classes)
    if changes.get("rename"):
        key = sorted(k for k in state if k.startswith("student."))[0]
        state[key.replace("student.", "student.renamed_")] = state.pop(key)
    if changes.get("extra"):
        state["student.extra.weight"] = torch.zeros(3)
    if changes.get("foreign"):
        state["model.weight"] = torch.zeros(3)
    hyper = {"model": {"name": case}, "lr": 1e-4}
    if changes.get("unsafe"):
        hyper["args"] = argparse.Namespace(lr=1e-4)
    checkpoint = {
        "epoch": 96,
        "global_step": 1000,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": state,
        "hyper_parameters": hyper,
        "optimizer_states": [],
        "lr_schedulers": [],
        "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.864)}},
    }
    torch.save(checkpoint, path)
    return path


class Server:
    """Serves ``files`` (URL path → bytes) with HTTP Range; ``mode``: ok, corrupt (a byte changed) or truncate
    (the full Content-Length announced, half the bytes sent, the connection closed)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode = "ok"
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests += 1
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                if server.mode == "corrupt":
                    data = data[:100] + bytes([data[100] ^ 1]) + data[101:]
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if server.mode == "truncate" else body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EASTMIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EASTMIR_WEIGHTS", raising=False)
    return tmp_path / "cache"


def register(
    monkeypatch,
    server: Server,
    file: Path,
    name: str = NAME,
    config: str = "openmic/east_final-passt",
    options: dict | None = None,
) -> zoo.ZooEntry:
    data = file.read_bytes()
    server.files["/" + file.name] = data
    spec = zoo.ZooEntry(
        name,
        config,
        "work_dir_openmic/east_final_passt/epoch=96-val_mAP=0.864.ckpt",
        hashlib.sha256(data).hexdigest(),
        len(data),
        url=server.url("/" + file.name),
        student_options={"base_channels": 64} if options is None else options,  # the golden CP-ResNet's width
    )
    monkeypatch.setitem(zoo.ZOO, name, spec)
    return spec


def test_a_converted_student_predicts_as_the_authors_model(
    tmp_path, cache, server, monkeypatch, capsys, litert_converter
):
    from eastmir.inference import load_run

    register(monkeypatch, server, authors_checkpoint(tmp_path / "authors.ckpt"))
    workdir = tmp_path / "work"
    assert main(["zoo", "get", NAME, "--workdir", str(workdir), "--no-progress"]) == 0
    run_dir = workdir / "runs" / "openmic-test-cp_resnet64"
    assert f"run directory {run_dir}" in capsys.readouterr().out
    run = load_run(run_dir)
    golden, front_end = np.load(GOLDEN / "cp_resnet.npz"), np.load(GOLDEN / "front_end.npz")
    # their front end on the bundled OpenMIC clip: a wrong setting in the converted run's config fails here
    logmel = run.frontend()(torch.from_numpy(front_end["openmic.wave32k"])[None])[0].numpy()
    assert np.abs(logmel - front_end["openmic.logmel"]).max() < 3e-4
    # their model's outputs for these weights: a wrong key map fails here
    logits = run.logits(torch.from_numpy(golden["input"])).numpy()
    assert np.abs(logits - golden["out.scores"]).max() <= 1e-5 * np.abs(golden["out.scores"]).max()
    assert run.classes[:3] == ["accordion", "banjo", "bass"] and len(run.classes) == 20
    provenance = json.loads((run_dir / "zoo.json").read_text())
    assert provenance["sha256"] == zoo.ZOO[NAME].sha256 and provenance["authors_validation_mAP"] == 0.864

    # predict on the bundled clip: the student on the authors' front end of the decoded clip
    out = tmp_path / "predictions.jsonl"
    args = ["predict", str(run_dir), str(CLIP), "--format", "jsonl", "--out", str(out), "--no-progress"]
    assert main([*args, "--precision", "float32"]) == 0
    predicted = json.loads(out.read_text().splitlines()[0])
    from eastmir.audio import load_audio

    wave = torch.from_numpy(load_audio(CLIP, 32000))[None]
    expected = torch.sigmoid(run.logits(run.frontend()(wave))).numpy()[0]
    probabilities = np.array([predicted["probabilities"][c] for c in run.classes])
    assert np.abs(probabilities - expected).max() < 1e-4
    assert main(["export", str(run_dir), "--no-progress"]) == 0  # with its parity check against the run
    assert (run_dir / "export" / "model.onnx").stat().st_size > 1e6
    # the phone format too, checked the same way; its int8 needs the run's training clips, which a zoo student
    # does not bring: one line saying what to do
    assert main(["export", str(run_dir), "--format", "litert", "--no-progress"]) == 0
    assert (run_dir / "export" / "model.tflite").stat().st_size > 1e6
    assert "largest difference to `eastmir predict`" in (run_dir / "export" / "model.md").read_text()
    assert main(["export", str(run_dir), "--format", "coreml", "--quantize", "float16", "--no-progress"]) == 0
    assert (run_dir / "export" / "model-float16.mlpackage" / "Manifest.json").is_file()
    assert "Core ML predicts only on Apple's systems" in (run_dir / "export" / "model-float16.md").read_text()
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "litert", "--quantize", "int8", "--no-progress"]) != 0
    refused = capsys.readouterr().err.strip().splitlines()[-1]
    assert refused.startswith("eastmir: error: --quantize int8 calibrates on the run's training clips")
    assert "pass --calibrate-on RECORDINGS" in refused
    # calibrated on recordings the user has instead (here the bundled OpenMIC clip)
    args = ["export", str(run_dir), "--format", "litert", "--quantize", "int8", "--calibrate-on", str(CLIP)]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "int8 test mAP not measured" in out and "largest difference to `eastmir predict`" in out
    assert (
        "calibrated on 1 recording(s) given with --calibrate-on" in (run_dir / "export" / "model-int8.md").read_text()
    )
    assert main([*args[:-2], "--calibrate-on", str(tmp_path / "nothing.wav"), "--no-progress"]) != 0
    assert "eastmir: error: --calibrate-on " in capsys.readouterr().err
    assert main(["zoo", "--no-progress"]) == 0
    listing = capsys.readouterr().out
    assert f"| {NAME} | openmic | cp_resnet | passt | 20 | 0.864 |" in listing and "| yes |" in listing


def test_a_corrupted_or_truncated_download_is_refused_and_a_rerun_recovers(
    tmp_path, cache, server, monkeypatch, capsys
):
    register(monkeypatch, server, authors_checkpoint(tmp_path / "authors.ckpt"))
    args = ["zoo", "get", NAME, "--workdir", str(tmp_path / "work"), "--no-progress"]
    server.mode = "corrupt"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "does not match the published" in err and "the download was removed" in err
    assert not any((cache / "zoo").glob("*.ckpt*"))
    server.mode = "truncate"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "download interrupted" in err and "rerun the same command to resume" in err
    part = cache / "zoo" / "openmic-test-cp_resnet64.ckpt.part"
    assert 0 < part.stat().st_size < zoo.ZOO[NAME].size
    server.mode = "ok"
    assert main(args) == 0  # resumed from the part kept
    kept = cache / "zoo" / "openmic-test-cp_resnet64.ckpt"
    assert kept.stat().st_size == zoo.ZOO[NAME].size and not part.exists()
    data = bytearray(kept.read_bytes())
    data[200] ^= 1  # a changed byte in the cached copy: checked again before every use
    kept.write_bytes(bytes(data))
    assert main(args) == 2
    assert "does not match the published" in capsys.readouterr().err
    kept.write_bytes(kept.read_bytes()[:-10])  # a shorter copy: named by its size
    assert main(args) == 2
    assert f"not the published {zoo.ZOO[NAME].size}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("rename", r"renamed_\S+ \(as \S+\) is not a parameter of CPResNet"),
        ("extra", r"extra.weight \(as extra.weight\) is not a parameter"),
        ("foreign", r"unexpected key model.weight"),
        ("unsafe", r"refused: the checkpoint holds pickled Python objects \(argparse.Namespace\)"),
    ],
)
def test_a_wrong_key_a_leftover_or_an_unsafe_object_is_refused(
    change, message, tmp_path, cache, server, monkeypatch, capsys
):
    file = authors_checkpoint(tmp_path / f"{change}.ckpt", **{change: True})
    register(monkeypatch, server, file)
    assert main(["zoo", "get", NAME, "--workdir", str(tmp_path / "work"), "--file", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eastmir: error: ") and err.count("\n") == 1 and re.search(message, err), err
    assert not (tmp_path / "work" / "runs" / "openmic-test-cp_resnet64").exists()


def test_a_file_that_is_not_the_published_one_is_refused_before_it_is_read(
    tmp_path, cache, server, monkeypatch, capsys
):
    register(monkeypatch, server, authors_checkpoint(tmp_path / "authors.ckpt"))
    other = authors_checkpoint(tmp_path / "other.ckpt", extra=True)
    assert main(["zoo", "get", NAME, "--workdir", str(tmp_path / "w"), "--file", str(other)]) == 2
    assert "not the published" in capsys.readouterr().err


def annotations(path: Path, counts: list[int], clips: int = 60) -> Path:
    tags = [f"tag{i:02d}" for i in range(len(counts))]
    lines = ["\t".join(["clip_id", *tags, "mp3_path"])]
    for c in range(clips):
        lines.append("\t".join([str(c), *("1" if c < n else "0" for n in counts), f"x/{c}.mp3"]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_magnatagatune_tags_come_from_your_annotations_in_the_authors_order(
    tmp_path, cache, server, monkeypatch, capsys
):
    from eastmir.inference import load_run

    counts = [5 + (i * 7) % 53 for i in range(52)]
    counts[10] = counts[11]  # a tie
    file = annotations(tmp_path / "annotations_final.csv", counts)
    classes, ties = magnatagatune_classes(file)
    order = np.argsort(-np.array(counts))[:50]
    assert classes == [f"tag{i:02d}" for i in order] and ["tag10", "tag11"] in [sorted(g) for g in ties]
    name = "magnatagatune/test-mobile_fcn"
    ckpt = authors_checkpoint(tmp_path / "magna.ckpt", "mobile_fcn", classes=50)
    register(monkeypatch, server, ckpt, name, "magnatagatune/east_final-passt", options={})
    workdir = tmp_path / "work"
    assert main(["zoo", "get", name, "--workdir", str(workdir)]) == 2
    assert "--annotations" in capsys.readouterr().err
    assert main(["zoo", "get", name, "--workdir", str(workdir), "--annotations", str(file), "--no-progress"]) == 0
    assert re.search(r"tag1[01], tag1[01] have the same count", capsys.readouterr().out)
    run = load_run(workdir / "runs" / "magnatagatune-test-mobile_fcn")
    golden = np.load(GOLDEN / "mobile_fcn.npz")
    logits = run.logits(torch.from_numpy(golden["input"])).numpy()
    assert np.abs(logits - golden["out.scores"]).max() <= 1e-5 * np.abs(golden["out.scores"]).max()
    assert run.classes == classes and run.config.frontend.preemphasis == 0.97
