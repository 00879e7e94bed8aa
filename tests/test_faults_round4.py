"""Faults of the fourth hostile trial (issue 32), by family: outputs never destroy inputs, every number is
validated once, every OS error is one line, finished runs know their data."""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from eastmir import pipeline
from eastmir.cli import build_parser, main
from eastmir.config import load_config
from eastmir.errors import ConfigError, RunError
from eastmir.outputs import LEDGER, OutputError, Outputs


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("eastmir: error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ one way to write an output


def test_the_output_rules(tmp_path):
    audio = tmp_path / "song.wav"
    audio.write_bytes(b"RIFF")
    rules = Outputs().with_inputs([audio])
    with pytest.raises(OutputError, match="one of this command's inputs"):
        rules.check(audio)
    with pytest.raises(OutputError, match="one of this command's inputs"):
        Outputs(overwrite=True).with_inputs([audio]).write(audio, "x")  # --overwrite never reaches an input
    with pytest.raises(OutputError, match=r"the folder .*missing does not exist; create it first"):
        rules.check(tmp_path / "missing" / "out.csv")
    assert not (tmp_path / "missing").exists()  # nothing made outside the named output
    mine = tmp_path / "mine.csv"
    mine.write_text("user\n")
    with pytest.raises(OutputError, match="the file exists and eastmir did not write it; pass --overwrite"):
        rules.write(mine, "eastmir\n")
    assert mine.read_text() == "user\n"
    Outputs(overwrite=True).write(mine, "eastmir\n")
    assert mine.read_text() == "eastmir\n"
    with pytest.raises(OutputError, match="a folder stands there"):
        rules.check(tmp_path)
    # eastmir's own output folder: its unchanged files are replaced, an edited one is not
    folder = Outputs().folder(tmp_path / "report")
    Outputs().write(folder / "report.md", "one")
    Outputs().write(folder / "report.md", "two")
    assert (folder / "report.md").read_text() == "two" and (folder / LEDGER).is_file()
    (folder / "report.md").write_text("edited")
    with pytest.raises(OutputError, match="eastmir did not write it"):
        Outputs().write(folder / "report.md", "three")
    assert not [p for p in tmp_path.rglob("*.part")]


def test_predict_never_writes_onto_its_input(short_run, tmp_path, capsys):
    song = tmp_path / "song.wav"
    sf.write(song, (np.sin(np.arange(48000) / 5) * 0.1).astype(np.float32), 16000)
    before = song.read_bytes()
    for extra in ([], ["--overwrite"]):
        argv = ["predict", str(short_run), str(song), "--out", str(song), "--format", "csv", *extra]
        assert main(argv) == 2
        assert "one of this command's inputs" in one_error_line(capsys.readouterr().err)
        assert song.read_bytes() == before
    inside = short_run / "metrics.json"
    kept = inside.read_bytes()
    assert main(["predict", str(short_run), str(song), "--out", str(inside), "--overwrite"]) == 2
    assert "inside" in one_error_line(capsys.readouterr().err) and inside.read_bytes() == kept
    out = tmp_path / "tags.csv"
    assert main(["predict", str(short_run), str(song), "--out", str(out), "--format", "csv", "--no-progress"]) == 0
    assert main(["predict", str(short_run), str(song), "--out", str(out), "--format", "csv"]) == 2  # not ours
    assert "--overwrite" in one_error_line(capsys.readouterr().err)
    assert main(["predict", str(short_run), str(song), "--out", str(tmp_path / "new" / "t.csv")]) == 2
    assert "does not exist; create it first" in one_error_line(capsys.readouterr().err)


def test_report_keeps_a_user_s_report_md_and_writes_beside_its_own(short_run, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("my draft\n")
    assert main(["report", str(short_run), "--out", str(out)]) == 2
    assert str(out / "report.md") in one_error_line(capsys.readouterr().err)
    assert (out / "report.md").read_text() == "my draft\n" and not (out / "report.html").exists()
    assert main(["report", str(short_run), "--out", str(out), "--overwrite"]) == 0
    assert main(["report", str(short_run), "--out", str(out)]) == 0  # now eastmir's own files: replaced
    capsys.readouterr()
    for argv in (["--csv", str(tmp_path / "nope" / "r.csv")], ["--out", str(tmp_path / "nope" / "deeper")]):
        assert main(["report", str(short_run), *argv]) == 2
        assert "does not exist" in one_error_line(capsys.readouterr().err)


def test_complexity_names_a_missing_csv_folder_before_its_timing_run(tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the timing run started")

    monkeypatch.setattr("eastmir.inference.complexity.measure", never)
    assert main(["complexity", "--csv", str(tmp_path / "missing" / "c.csv")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert main(["complexity", "--students", "mobile_fcnn"]) == 2
    assert "did you mean mobile_fcn" in one_error_line(capsys.readouterr().err)


def test_pack_and_export_refuse_an_existing_file_and_the_run_s_own_checkpoint(short_run, workdir, tmp_path, capsys):
    target = tmp_path / "shards"
    target.write_text("a file\n")
    argv = ["pack", "--config", "synth/baseline", "--workdir", str(workdir), "--out", str(target)]
    assert main(argv) == 2
    assert "a file stands there; name a folder" in one_error_line(capsys.readouterr().err)
    last = short_run / "checkpoints" / "last.ckpt"
    kept = last.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["export", str(short_run), "--format", "torchscript", "--out", str(last), *extra]) == 2
        assert "one of this command's inputs" in one_error_line(capsys.readouterr().err)
    assert last.read_bytes() == kept


# ------------------------------------------------------------------ finished runs know their data


def test_a_finished_run_whose_dataset_changed_says_so_instead_of_printing_old_scores(short_run, workdir, capsys):
    config = load_config("synth/baseline", ["name=short_run", "trainer.max_epochs=2"], workdir=workdir)
    manifest = Path(config.data.root) / "manifest.json"
    original = manifest.read_bytes()
    assert main(["fit", "--config", "synth/baseline", "--workdir", str(workdir), "--set", "name=short_run",
                 "trainer.max_epochs=2"]) == 0  # fmt: skip
    assert "already finished" in capsys.readouterr().out
    blob = json.loads(original)
    blob["clips"][0]["labels"] = [1 - x for x in blob["clips"][0]["labels"]]  # a relabelled clip
    try:
        manifest.write_text(json.dumps(blob))
        with pytest.raises(RunError, match=r"finished on other data: .*manifest\.json changed since it trained"):
            pipeline.fit(config, progress=False)
    finally:
        manifest.write_bytes(original)
    pipeline.fit(config, progress=False)  # the data as it was: finished, as before


# ------------------------------------------------------------------ one validation of every number and name


def numeric_options() -> list[tuple[str, list[str], argparse.Action]]:
    """Every subcommand's options that take a number, with the subcommand's path (``["experiment",
    "limited-data"]``), read from the argument parser itself."""
    found = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.option_strings and (action.type in (int, float) or getattr(action.type, "bounded", False)):
                found.append((" ".join(path), path, action))

    walk(build_parser(), [])
    return found


# what makes each command stop at once once its number is accepted (a name that does not exist, no such path)
FAST_FAILURE = {
    "data prepare": ["synth", "--root", "/nonexistent/eastmir/x", "--set", "n_clips=0"],
    "extract": ["--teacher", "no_such_teacher", "--dataset", "/nonexistent/eastmir"],
    "pack": ["--config", "/nonexistent/eastmir.yaml", "--out", "/nonexistent/eastmir/out"],
    "predict": ["/nonexistent/eastmir/run", "/nonexistent/eastmir/a.wav"],
    "complexity": ["--students", "no_such_student"],
    "experiment limited-data": ["--systems", "no/such", "--workdir", "/nonexistent/eastmir"],
    "demo": ["--teacher", "no_such_teacher", "--workdir", "/nonexistent/eastmir"],
}


def test_every_numeric_option_is_validated_by_the_config_s_types():
    options = numeric_options()
    assert len(options) >= 12
    raw = [f"{cmd} {a.option_strings[0]}" for cmd, _, a in options if a.type in (int, float)]
    assert raw == []  # every number goes through a bounded type of eastmir.numbers


@pytest.mark.parametrize("value", ["0", "-1", "1e30", "nan"])
def test_every_numeric_option_fed_hostile_values_gives_one_line_or_runs(value, capsys):
    def timeout(*args):
        raise TimeoutError("no answer within 60 s")

    signal.signal(signal.SIGALRM, timeout)
    for command, path, action in numeric_options():
        argv = [*path, *FAST_FAILURE.get(command, []), action.option_strings[0], value]
        if action.nargs in ("+", "*"):
            argv.append(value)
        signal.alarm(60)
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse: one line, exit 2
            code = stop.code
        finally:
            signal.alarm(0)
        err = capsys.readouterr().err
        assert code == 2, (argv, code, err)
        assert "Traceback" not in err and err.count("eastmir: error: ") == 1, (argv, err)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["predict", "RUN", "a.wav", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["predict", "RUN", "a.wav", "--batch-size", "-5"], "argument --batch-size: must be at least 1, got -5"),
        (["pack", "--config", "c", "--out", "o", "--shard-size", "0"], "argument --shard-size: must be at least 1"),
        (["complexity", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["extract", "--teacher", "t", "--dataset", "d", "--workers", "-1"], "argument --workers: must be at least 0"),
        (["predict", "RUN", "a.wav", "--hop", "nan"], "argument --hop: must be a finite number, got 'nan'"),
    ],
)
def test_the_named_numbers_are_refused_in_one_line(argv, problem, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and problem in capsys.readouterr().err


def test_predict_curve_needs_json_lines(short_run, tmp_path, capsys):
    assert main(["predict", str(short_run), str(tmp_path), "--curve", "--format", "table"]) == 2
    assert "--curve adds each window's probabilities to JSON Lines" in one_error_line(capsys.readouterr().err)


def test_grid_values_given_twice_are_refused():
    from eastmir.experiments.sweep import parse_grid

    with pytest.raises(ConfigError, match=r"--grid 'seed=0,0': 0 given more than once \(the same run twice\)"):
        parse_grid(["seed=0,0"])
    assert parse_grid(["seed=0,1", "distillation.lambda=0.1,0.3"]) == {
        "seed": [0, 1],
        "distillation.lambda": [0.1, 0.3],
    }


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"seed": -1}, "seed: must be at least 0, got -1"),
        ({"clip_seconds": 1e9}, "clip_seconds: must be at most 600.0"),
        ({"n_clips": 0}, "n_clips: must be at least 1, got 0"),
    ],
)
def test_synth_options_are_bounded_before_anything_renders(tmp_path, options, problem):
    with pytest.raises(ConfigError, match=problem):
        pipeline.prepare("synth", tmp_path / "synth", options, progress=False)
    assert not (tmp_path / "synth").exists()


def test_max_bad_fraction_is_a_probability(tmp_path):
    with pytest.raises(ConfigError, match=r"max_bad_fraction: must be at most 1\.0, got 2"):
        pipeline.prepare("folder", tmp_path, {"max_bad_fraction": 2}, progress=False)


def test_demo_checks_the_teacher_s_name_before_rendering(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "--teacher", "musicnnn", "--no-progress"]) == 2
    assert "did you mean musicnn" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []  # nothing rendered, read or trained


def test_prepare_root_on_a_file_is_named_as_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["data", "prepare", "folder", "--root", str(tmp_path / "f")]) == 2
    assert "a file stands there; --root names the dataset's folder" in one_error_line(capsys.readouterr().err)


def test_report_on_nothing_exits_non_zero(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory or folder" in one_error_line(capsys.readouterr().err)
    assert main(["report", str(tmp_path)]) == 2
    assert "no run directory in" in one_error_line(capsys.readouterr().err)


def test_a_symlink_loop_as_predict_input_is_named_as_one(short_run, tmp_path, capsys):
    os.symlink("loop.wav", tmp_path / "loop.wav")
    assert main(["predict", str(short_run), str(tmp_path / "loop.wav")]) == 2
    assert "is a symbolic link loop" in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ streamed shards


def test_a_missing_or_corrupt_shard_is_one_line_before_training(short_run, workdir, tmp_path, capsys):
    shards = tmp_path / "shards"
    argv = ["pack", "--config", "synth/baseline", "--workdir", str(workdir), "--out", str(shards), "--no-progress"]
    assert main([*argv, "--shard-size", "40"]) == 0
    index = json.loads((shards / "index.json").read_text())
    first = shards / index["splits"]["train"]["shards"][0]
    blob = first.read_bytes()
    fit = ["fit", "--config", "synth/baseline", "--workdir", str(workdir), "--no-progress"]
    fit += ["--set", "name=streamed", f"data.stream={shards}", "trainer.max_epochs=1", "augment.mixup_partner=batch"]
    first.write_bytes(b"not a tar" * 100)
    capsys.readouterr()
    assert main(fit) == 2
    assert f"{first}: shard of the train split is not a tar shard" in one_error_line(capsys.readouterr().err)
    first.unlink()
    assert main(fit) == 2
    assert f"{first}: shard of the train split does not exist" in one_error_line(capsys.readouterr().err)
    first.write_bytes(blob)


# ------------------------------------------------------------------ one line for every OS error


def test_a_closed_pipe_ends_quietly():
    command = [sys.executable, "-c", "import sys; from eastmir.cli import main; sys.exit(main(['configs']))"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdout.readline()
        proc.stdout.close()  # `eastmir configs | head -1`
        err = proc.stderr.read().decode()
        proc.wait(60)
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert proc.returncode in (0, 141)


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="no file-size limit on this system")
def test_fit_under_a_file_size_limit_is_one_line_and_leaves_no_part(short_run, workdir):
    """``ulimit -f 64``: a checkpoint cannot be written; the line names it and the cause."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY)); "
        "from eastmir.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = ["fit", "--config", "synth/baseline", "--workdir", str(workdir), "--no-progress"]
    argv += ["--set", "name=limited", "trainer.max_epochs=1"]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_error_line(done.stderr)
    assert "file too large" in line and "ulimit -f" in line and ".ckpt" in line
    checkpoints = workdir / "runs" / "limited" / "checkpoints"
    assert not list(checkpoints.glob(".*.part")) and not list(checkpoints.glob("*.ckpt"))


# ------------------------------------------------------------------ the same probabilities on every CPU


def test_predict_is_float32_by_default_whatever_the_cpu(short_run, small_synth, monkeypatch, capsys):
    clip = str(small_synth.audio_file(small_synth.clips[0]))
    results = {}
    for capability in ("AVX512-BF16", None):
        monkeypatch.setattr("eastmir.inference.predict.bf16_capability", lambda c=capability: c)
        assert main(["predict", str(short_run), clip, "--format", "jsonl", "--no-progress"]) == 0
        captured = capsys.readouterr()
        assert "predicting in float32" in captured.err
        results[capability] = json.loads(captured.out)["probabilities"]
    first, second = results.values()
    assert first.keys() == second.keys()
    assert max(abs(first[k] - second[k]) for k in first) <= 1e-6
    assert main(["predict", str(short_run), clip, "--precision", "bf16", "--no-progress"]) == 0
    assert "predicting in bf16" in capsys.readouterr().err  # bf16 when asked


def test_float32_predictions_agree_whichever_cpu_kernels_torch_picks(short_run, small_synth):
    """The same run and recording on the AVX2 kernels and on the best this CPU has (AVX-512 where present):
    the same probabilities, to the 1e-6 the output prints."""
    clip = str(small_synth.audio_file(small_synth.clips[0]))
    command = [sys.executable, "-m", "eastmir", "predict", str(short_run), clip, "--format", "jsonl", "--no-progress"]
    outputs = []
    for capability, isa in (("default", "ALL"), ("avx2", "AVX2")):
        env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, ONEDNN_MAX_CPU_ISA=isa)
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(json.loads(done.stdout)["probabilities"])
    assert max(abs(outputs[0][k] - outputs[1][k]) for k in outputs[0]) <= 1e-6 + 1e-12


def test_unknown_names_in_a_config_are_refused_before_data_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"student\.name"):
        load_config("synth/baseline", ["student.name=mobile_fnc"], workdir=tmp_path)
    assert not (tmp_path / "data").exists()
