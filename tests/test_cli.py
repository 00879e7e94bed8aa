import json

import pytest

from eastmir.cli import main

TINY_DEMO = ["--data", "n_clips=40", "clip_seconds=2.0", "--set", "trainer.max_epochs=1"]


def test_data_prepare_synth(tmp_path, capsys):
    assert (
        main(["data", "prepare", "synth", "--root", str(tmp_path / "s"), "--set", "n_clips=5", "clip_seconds=1.0"]) == 0
    )
    out = capsys.readouterr().out
    assert "5 clips" in out and "17 classes" in out
    blob = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert len(blob["clips"]) == 5


def test_unknown_dataset_is_one_line_listing_valid(tmp_path, capsys):
    assert main(["data", "prepare", "synthh", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "eastmir: error: unknown dataset 'synthh' (did you mean synth?); "
        "valid datasets: esc50, fma_small, folder, magnatagatune, openmic, synth\n"
    )


def test_debug_shows_the_traceback(tmp_path):
    from eastmir.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        main(["--debug", "data", "prepare", "synthh", "--root", str(tmp_path)])


def demo_tables(out: str) -> dict[str, list[list[str]]]:
    """The demo's printed Markdown tables by the heading above them, each row as its cells."""
    tables: dict[str, list[list[str]]] = {}
    heading = ""
    for line in out.splitlines():
        if line.startswith("## "):
            heading = line[3:]
        elif line.startswith("| ") and not line.startswith("|---"):
            tables.setdefault(heading, []).append([c.strip() for c in line.strip().strip("|").split("|")])
    return tables


def test_demo_end_to_end_tiny(tmp_path, capsys):
    """The demo's whole path on a tiny set: render, extract, train three systems on two seeds, tables."""
    assert main(["demo", "--workdir", str(tmp_path), "--no-progress", "--seeds", "0", "1", *TINY_DEMO]) == 0
    tables = demo_tables(capsys.readouterr().out)
    summary = tables["Test split, mean ± std over 2 seeds"]
    assert [row[0] for row in summary] == ["System", "Baseline", "TeacherLR", "EAsT_Final (unbiased)"]
    assert all(row[2:4] == ["50%", "2"] for row in summary[1:])
    runs = tmp_path / "runs"

    def test_map(name):
        return json.loads((runs / name / "metrics.json").read_text())["test"]["mAP"]

    paired = {row[0]: row for row in tables["Against the Baseline of the same seed"][1:]}
    east = paired["EAsT_Final (unbiased)"]
    differences = [
        test_map(f"east_final_unbiased-musicnn-frac0.5-seed{s}") - test_map(f"baseline-frac0.5-seed{s}") for s in (0, 1)
    ]
    assert east[5] == ", ".join(f"{s}: {d:+.3f}".replace("-", "−") for s, d in enumerate(differences))
    assert east[6] == f"{sum(d > 0 for d in differences)} of 2" and "TeacherLR" in paired
    assert len(tables["Every run"]) == 1 + 6
    written = (runs / "demo_results.md").read_text()
    assert "EAsT_Final (unbiased)" in written and (runs / "demo_results.csv").exists()
    assert len(json.loads((tmp_path / "data" / "synth" / "manifest.json").read_text())["clips"]) == 40


def test_demo_runs_any_system_by_name_and_its_prerequisites(tmp_path, capsys):
    args = ["demo", "--workdir", str(tmp_path), "--no-progress", "--systems", "east_kd", "east_dc_linear", *TINY_DEMO]
    assert main([*args, "--teacher", "aisfx", "--seeds", "3", "--fraction", "1"]) == 0
    tables = demo_tables(capsys.readouterr().out)
    summary = tables["Test split, mean ± std over 1 seed"]
    assert [row[0] for row in summary] == ["System", "EAsT_KD", "EAsT_DC + Linear"]
    head = tmp_path / "runs" / "teacher_lr-frac1-seed3" / "metrics.json"
    assert head.exists()  # KD's TeacherLR head was trained first, on the same seed and data


def test_demo_with_another_teacher_names_its_runs_after_it(tmp_path, capsys):
    args = ["demo", "--workdir", str(tmp_path), "--no-progress", "--systems", "baseline", "kd", *TINY_DEMO]
    assert main([*args, "--teacher", "musicnn+aisfx", "--seeds", "0"]) == 0
    tables = demo_tables(capsys.readouterr().out)
    assert [row[:2] for row in tables["Test split, mean ± std over 1 seed"][1:]] == [
        ["Baseline", "—"],
        ["KD", "musicnn+aisfx"],
    ]
    kd = json.loads((tmp_path / "runs" / "kd-musicnn+aisfx-frac0.5-seed0" / "metrics.json").read_text())
    assert kd["teacher"] == "musicnn+aisfx"
    head = json.loads((tmp_path / "runs" / "teacher_lr-musicnn+aisfx-frac0.5-seed0" / "metrics.json").read_text())
    assert head["teacher"] == "musicnn+aisfx"  # KD's head came from the TeacherLR run of the same teacher
    assert "musicnn+aisfx teacher" in (tmp_path / "runs" / "demo_results.md").read_text()


def test_demo_rejects_unknown_system(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "--systems", "east_final_typo"]) == 2
    assert "(did you mean east_final?); valid: baseline" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["extract", "--teacher", "aisfxx", "--dataset", "."],
            "unknown teacher 'aisfxx' (did you mean aisfx?); valid teachers: aisfx, ensemble, musicnn, openl3, panns, "
            "passt, precomputed, vggish",
        ),
        (
            ["fit", "--config", "synth/east_finl"],
            "no such config file or shipped config (did you mean synth/east_final?); shipped: ",
        ),
        (
            ["fit", "--config", "synth/baseline", "--set", "student.name=mobile_fnc"],
            "(did you mean mobile_fcn?); valid students: ",
        ),
        (["fit", "--config", "missing/dir/run.yaml"], "missing/dir/run.yaml: no such config file"),
        (["report"], "the following arguments are required: runs"),  # argparse's own errors look the same
    ],
)
def test_every_name_error_is_one_line_with_the_valid_choices(args, message, capsys, tmp_path):
    try:
        status = main([*args, "--workdir", str(tmp_path)] if args[0] != "report" else args)
    except SystemExit as stop:
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("eastmir: error: ") and err.count("\n") == 1 and message in err, err


def test_teachers_lists_every_teacher_with_its_facts(capsys, aisfx_teacher):
    assert main(["teachers"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()[2:]}
    assert set(rows) == {"aisfx", "ensemble", "musicnn", "openl3", "panns", "passt", "precomputed", "vggish"}
    assert (
        "md5:541141fa2ee191a88f24a3219fff024e" in rows["panns"]
        and "| 2048 | one per clip | 32000 Hz |" in rows["panns"]
    )
    assert "its finest member" in rows["ensemble"]
    assert "| 512 | 1.161 s | 44100 Hz |" in rows["aisfx"] and "CC BY 4.0" in rows["aisfx"]
    assert "200 (penultimate), 753" in rows["musicnn"] and "| 2.992 s | 16000 Hz |" in rows["musicnn"]
    assert rows["aisfx"].rstrip(" |").endswith("yes")  # fetched by the aisfx_teacher fixture


def test_fit_prints_the_test_metrics_when_it_ends(small_synth, workdir, capsys):
    argv = ["fit", "--config", "synth/baseline", "--workdir", str(workdir), "--no-progress"]
    assert main([*argv, "--set", "name=cli_fit", "trainer.max_epochs=1", "data.batch_size=16"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((workdir / "runs" / "cli_fit" / "metrics.json").read_text())
    line = next(line for line in out.splitlines() if line.startswith("Baseline (cli_fit), test split: "))
    assert f"mAP {metrics['test']['mAP']:.4f}" in line and f"run directory: {workdir / 'runs' / 'cli_fit'}" in out


def test_demo_help_states_the_defaults_the_demo_uses(capsys):
    """The help text spelled its teacher as the constant's name; every default it states is the demo's."""
    from eastmir.demo import DEFAULT_SYSTEMS, DEFAULT_TEACHER, DEMO_FRACTION, DEMO_SEEDS

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {' '.join(DEFAULT_SYSTEMS)})" in text
    assert f"(default: {' '.join(map(str, DEMO_SEEDS))})" in text
    assert f"(default: {DEMO_FRACTION:g})" in text
    assert f"(default: {DEFAULT_TEACHER});" in text
