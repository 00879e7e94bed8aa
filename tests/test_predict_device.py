"""Prediction at scale: files decoded in worker processes, windows of many files batched, a device to run on;
the results equal the one-file path whatever the workers, the batch or the lengths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from eastmir import load_student
from eastmir.audio import load_audio
from eastmir.cli import main
from eastmir.errors import RunError
from eastmir.inference.devices import choose_device
from eastmir.inference.files import Failure, default_workers

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def recordings(short_run, tmp_path_factory):
    """Files of every length the windowing treats apart: too short, below one window, exactly one, one plus a
    sample, several with a ragged end; a broken file among them; and one at 8 kHz (a band-limit warning)."""
    student = load_student(short_run)
    folder = tmp_path_factory.mktemp("recordings")
    rate, window = student.sample_rate, round(student.clip_seconds * student.sample_rate)
    rng = np.random.default_rng(0)
    lengths = {"a_short": student.minimum - 1, "b_part": window // 3, "c_one": window, "d_one_more": window + 1}
    lengths["e_several"] = int(3.3 * window)
    paths = []
    for name, n in lengths.items():
        path = folder / f"{name}.wav"
        sf.write(path, (rng.standard_normal(n) * 0.1).astype(np.float32), rate)
        paths.append(path)
    broken = folder / "f_broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    narrow = folder / "g_narrow.wav"
    sf.write(narrow, (rng.standard_normal(8000 * 3) * 0.1).astype(np.float32), 8000)
    return [*paths, broken, narrow]


def one_by_one(student, paths) -> dict[str, np.ndarray | None]:
    """Each file through the one-file path (``predict`` of its decoded waveform): the reference."""
    out = {}
    for path in paths:
        try:
            audio = load_audio(path, student.sample_rate)
            out[str(path)] = student.predict(audio, student.sample_rate).windows
        except Exception:
            out[str(path)] = None
    return out


@pytest.mark.parametrize(("workers", "batch_size"), [(0, 1), (0, 64), (2, 3), (2, 32)])
def test_batched_and_worker_decoded_predictions_equal_the_one_file_path(short_run, recordings, workers, batch_size):
    student = load_student(short_run, device="cpu")
    expected = one_by_one(student, recordings)
    with pytest.warns(UserWarning, match="8000 Hz"):
        results = list(student.predict_files(recordings, batch_size=batch_size, progress=False, workers=workers))
    assert [r.source for r in results] == [str(p) for p in recordings]  # the order of the inputs
    for result in results:
        reference = expected[result.source]
        if reference is None:
            assert isinstance(result, Failure)
            continue
        assert result.windows.shape == reference.shape
        assert np.allclose(result.windows, reference, atol=1e-6, rtol=0), result.source
    failed = {r.source.rsplit("/", 1)[-1] for r in results if isinstance(r, Failure)}
    assert failed == {"a_short.wav", "f_broken.wav"}


def test_predict_cli_gives_the_same_lines_with_workers(short_run, recordings, tmp_path, capsys):
    outputs = []
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}.jsonl"
        args = ["predict", str(short_run), *map(str, recordings), "--format", "jsonl", "--out", str(out)]
        assert main([*args, "--no-progress", "--device", "cpu", "--workers", workers]) == 0
        outputs.append(out.read_text())
        err = capsys.readouterr().err
        assert err.count("g_narrow.wav: recorded at 8000 Hz") == 1  # a worker's warning shown once, in this process
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 5


@pytest.mark.skipif(not NO_CUDA, reason="a machine without CUDA")
def test_a_cuda_device_this_machine_lacks_is_one_line(short_run, recordings, tmp_path, capsys):
    assert choose_device("auto") == torch.device("cpu")
    assert main(["predict", str(short_run), str(recordings[2]), "--device", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eastmir: error: --device cuda: torch ") and "sees no CUDA device" in err
    assert len(err.splitlines()) == 1
    assert main(["complexity", "--students", "mobile_fcn", "--device", "cuda:0"]) == 2  # before any timing
    assert "sees no CUDA device" in capsys.readouterr().err
    with pytest.raises(RunError, match="auto, cpu, cuda or cuda:N"):
        choose_device("gpu")


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_cuda_predictions_equal_the_cpu_in_float32(short_run, recordings):
    cpu, gpu = load_student(short_run, device="cpu"), load_student(short_run, device="cuda")
    a = list(cpu.predict_files(recordings, progress=False))
    b = list(gpu.predict_files(recordings, progress=False))
    for x, y in zip(a, b, strict=True):
        assert x.source == y.source
        if not isinstance(x, Failure):
            assert np.allclose(x.windows, y.windows, atol=1e-5, rtol=0)


def test_int8_is_refused_on_a_gpu_before_loading(short_run):
    if NO_CUDA:
        pytest.skip("needs a CUDA device to ask for")
    with pytest.raises(RunError, match="int8 runs on the CPU only"):
        load_student(short_run, precision="int8", device="cuda")


def test_default_workers_leave_a_small_machine_alone(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)))
    assert default_workers() == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert default_workers() == 8


def test_jsonl_lines_name_the_files_in_input_order(short_run, recordings, tmp_path):
    out = tmp_path / "p.jsonl"
    shuffled = [recordings[4], recordings[1], recordings[2]]
    assert main(["predict", str(short_run), *map(str, shuffled), "--format", "jsonl", "--out", str(out)]) == 0
    files = [json.loads(line)["file"] for line in out.read_text().splitlines()]
    assert files == [str(p) for p in shuffled]


@pytest.mark.skipif(not NO_CUDA, reason="a machine without CUDA")
def test_a_gpu_accelerator_this_machine_lacks_is_one_line_for_extract_and_fit(small_synth, tmp_path, capsys):
    """``extract --accelerator gpu`` and ``fit`` with ``trainer.accelerator=gpu`` run the same Lightning path as on
    a GPU; on a machine without one they stop with one line, before any clip is embedded or trained on."""
    args = ["extract", "--teacher", "aisfx", "--dataset", str(small_synth.root), "--workdir", str(tmp_path)]
    assert main([*args, "--accelerator", "gpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("eastmir: error: --accelerator / --devices / --strategy (gpu, devices")
        and len(err.splitlines()) == 1
    )
    assert not list((tmp_path / "cache").rglob("*.npy"))  # nothing embedded
    fit = ["fit", "--config", "synth/baseline", "--workdir", str(tmp_path), "--no-progress"]
    assert main([*fit, "--set", f"data.root={small_synth.root}", "trainer.accelerator=gpu", "name=g"]) == 2
    assert "eastmir: error: trainer.accelerator / devices / strategy (gpu" in capsys.readouterr().err
