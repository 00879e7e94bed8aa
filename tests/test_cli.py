import json

from eastmir.cli import main


def test_data_prepare_synth(tmp_path, capsys):
    assert (
        main(["data", "prepare", "synth", "--root", str(tmp_path / "s"), "--set", "n_clips=5", "clip_seconds=1.0"]) == 0
    )
    out = capsys.readouterr().out
    assert "5 clips" in out and "17 classes" in out
    blob = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert len(blob["clips"]) == 5


def test_unknown_dataset_lists_valid(tmp_path):
    import pytest

    with pytest.raises(KeyError, match="valid datasets: esc50, fma_small, magnatagatune, openmic, synth"):
        main(["data", "prepare", "openmik", "--root", str(tmp_path)])


def test_demo_end_to_end_tiny(tmp_path, capsys):
    """The demo's whole path on a tiny set: render, extract, train three systems, table."""
    overrides = ["data.options.n_clips=40", "data.options.clip_seconds=2.0", "trainer.max_epochs=1"]
    assert main(["demo", "--workdir", str(tmp_path), "--no-progress", "--set", *overrides]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table] == ["System", "Baseline", "TeacherLR", "EAsT_Final"]
    written = (tmp_path / "runs" / "demo_results.md").read_text()
    assert "EAsT_Final" in written and (tmp_path / "runs" / "demo_results.csv").exists()
    for cell in table[1].split("|")[4:7]:
        assert 0.0 <= float(cell) <= 1.0


def test_demo_runs_any_system_by_name_and_its_prerequisites(tmp_path, capsys):
    overrides = ["data.options.n_clips=40", "data.options.clip_seconds=2.0", "trainer.max_epochs=1"]
    assert (
        main(
            [
                "demo",
                "--workdir",
                str(tmp_path),
                "--no-progress",
                "--systems",
                "east_kd",
                "east_dc_linear",
                "--set",
                *overrides,
            ]
        )
        == 0
    )
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in table] == ["System", "EAsT_KD", "EAsT_DC + Linear"]
    assert (tmp_path / "runs" / "teacher_lr" / "metrics.json").exists()  # KD's TeacherLR head was trained first


def test_demo_rejects_unknown_system(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="valid: baseline"):
        main(["demo", "--workdir", str(tmp_path), "--systems", "east_final_typo"])
