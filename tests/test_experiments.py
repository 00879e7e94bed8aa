"""Experiments: nested data fractions, grids chosen on validation, the MTAT → OpenMIC mapping, and the whole
sweep → experiment → report path at toy size, with the HTML page checked in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from eastmir.data.subsets import nested_subset, with_train_fraction
from eastmir.errors import ConfigError
from eastmir.experiments.studies import MTAT_TO_OPENMIC, generalisation, mapped_scores
from eastmir.experiments.sweep import SweepRun, expand, parse_grid, point_name, select, summary_table

# The MagnaTagATune top-50 tags (Law et al. 2009, as every tagging paper uses them).
MTAT_TOP50 = (
    "guitar classical slow techno strings drums electronic rock fast piano ambient beat violin vocal synth female "
    "indian opera male singing vocals|no vocals|harpsichord|loud|quiet|flute|woman|male vocal|no vocal|pop|soft|"
    "sitar|solo|man|classic|choir|voice|new age|dance|male voice|female vocal|beats|harp|cello|no voice|weird|"
    "country|metal|female voice|choral"
)
MTAT_TAGS = set(MTAT_TOP50.split("|")[0].split()) | set(MTAT_TOP50.split("|")[1:])


# ------------------------------------------------------------------------------------------ data fractions


def test_data_fractions_are_nested_seeded_and_independent_of_order():
    ids = [f"clip{i:03d}" for i in range(101)]
    subsets = {f: nested_subset(ids, f, seed=3) for f in (0.25, 0.5, 0.75, 1.0)}
    assert [len(s) for s in subsets.values()] == [26, 51, 76, 101]  # ceil(f · N)
    assert set(subsets[0.25]) < set(subsets[0.5]) < set(subsets[0.75]) < set(subsets[1.0]) == set(ids)
    assert nested_subset(list(reversed(ids)), 0.5, seed=3) == subsets[0.5]  # the manifest's order does not matter
    assert nested_subset(ids, 0.5, seed=4) != subsets[0.5]  # another seed, another draw
    assert nested_subset(ids, 0.5, seed=3) == subsets[0.5]  # the same seed, the same subset
    with pytest.raises(ValueError):
        nested_subset(ids, 0.0, seed=0)


def test_only_the_training_split_is_cut(small_synth):
    half = with_train_fraction(small_synth, 0.5, seed=1)
    for split in ("validation", "test"):
        assert half.split(split) == small_synth.split(split)
    assert len(half.split("train")) == -(-len(small_synth.split("train")) // 2)
    assert with_train_fraction(small_synth, 1.0, seed=1) is small_synth


# ------------------------------------------------------------------------------------------------ sweeps


def test_grid_parsing_and_expansion():
    grid = parse_grid(["distillation.lambda=0.1,0.3", "distillation.feature.stages=[0,1],[-1]", "seed=0,1"])
    assert grid == {"distillation.lambda": [0.1, 0.3], "distillation.feature.stages": [[0, 1], [-1]], "seed": [0, 1]}
    points = expand(grid)
    assert len(points) == 8 and points[0] == {
        "distillation.lambda": 0.1,
        "distillation.feature.stages": [0, 1],
        "seed": 0,
    }
    assert point_name("east_final", {"distillation.lambda": 0.3, "seed": 1}) == "east_final-lambda0.3-seed1"
    for bad in (["lambda"], ["lambda="], ["a=1", "a=2"]):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def _run(lam, seed, val, test):
    return SweepRun(
        {"distillation.lambda": lam, "seed": seed}, Path(f"r{lam}-{seed}"), {"best_val_mAP": val, "test": {"mAP": test}}
    )


def test_the_setting_with_the_best_mean_validation_over_seeds_is_chosen():
    runs = [
        _run(0.3, 0, 0.70, 0.50),  # the single best validation run ...
        _run(0.3, 1, 0.50, 0.52),  # ... but a mean of .60
        _run(0.6, 0, 0.64, 0.40),
        _run(0.6, 1, 0.66, 0.44),  # mean .65: chosen, whatever its test figures
    ]
    best, settings = select(runs)
    assert best.values == {"distillation.lambda": 0.6} and len(settings) == 2
    mean, std = best.test()["mAP"]
    assert mean == pytest.approx(0.42) and std == pytest.approx(np.std([0.40, 0.44], ddof=1))
    assert best.validation == pytest.approx((0.65, np.std([0.64, 0.66], ddof=1)))
    # λ 0.3 minus the chosen λ 0.6, seed by seed: +0.06 and −0.16, t interval with one degree of freedom
    table = summary_table(best, settings)
    low, high = stats.ttest_rel([0.70, 0.50], [0.64, 0.66]).confidence_interval(0.95)
    assert f"| −0.050 [{low:+.3f}, {high:+.3f}]: not distinguishable |".replace("-", "−") in table
    assert "| distillation.lambda=0.6 | 2 | 0.650 ± 0.014 | — |" in table


# ---------------------------------------------------------------------------------------- generalisation


def test_the_mtat_to_openmic_mapping_names_real_labels_of_both(data_dir):
    openmic = json.loads((data_dir / "openmic" / "class-map.json").read_text())
    assert set(MTAT_TO_OPENMIC) <= set(openmic)
    assert {tag for tags in MTAT_TO_OPENMIC.values() for tag in tags} <= MTAT_TAGS
    assert len(MTAT_TOP50.replace("|", " ").split()) >= 50  # the list above is the whole top 50
    assert len(MTAT_TAGS) == 50
    # each OpenMIC score is the best of its tags
    probs = np.array([[0.1, 0.9, 0.3], [0.6, 0.2, 0.4]])
    mapped = mapped_scores(probs, ["vocal", "singing", "piano"], {"voice": ("vocal", "singing"), "piano": ("piano",)})
    np.testing.assert_array_equal(mapped, [[0.9, 0.3], [0.6, 0.4]])
    with pytest.raises(ConfigError, match="no class cello"):
        mapped_scores(probs, ["vocal", "singing", "piano"], {"cello": ("cello",)})


@pytest.fixture(scope="module")
def toy_runs(small_synth, workdir):
    """A sweep and a limited-data study at toy size (1 epoch each, the small synth set)."""
    from eastmir.experiments.studies import limited_data
    from eastmir.experiments.sweep import sweep

    common = ["trainer.max_epochs=1", "data.batch_size=16", "teacher={name: aisfx}"]
    best, settings, out = sweep(
        "synth/east_final", parse_grid(["distillation.lambda=0.3,0.6", "seed=0,1"]), workdir, common, progress=False
    )
    studied = limited_data(
        ["synth/baseline", "synth/east_final"], [], workdir, (0.5, 1.0), (0, 1), common[:2], progress=False
    )
    return best, settings, out, studied


def test_a_sweep_runs_resumably_and_writes_its_choice(toy_runs, workdir):
    best, settings, out, _ = toy_runs
    assert len(settings) == 2 and all(len(s.runs) == 2 for s in settings)
    blob = json.loads((out / "sweep.json").read_text())
    assert blob["chosen"] == best.values and len(blob["runs"]) == 4
    assert (workdir / "runs" / "east_final-lambda0.3-seed1" / "metrics.json").is_file()
    config = (workdir / "runs" / "east_final-lambda0.6-seed0" / "config.yaml").read_text()
    assert "lambda: 0.6" in config and "seed: 0" in config
    assert "✓" in (out / "sweep.md").read_text()


def test_limited_data_trains_on_nested_subsets(toy_runs, small_synth):
    studied = toy_runs[3]
    assert len(studied) == 2 * 2 * 2  # systems × fractions × seeds
    counts = {
        d.name: json.loads((d / "metrics.json").read_text())["n_clips"]["train"]
        for d in studied
        if d.name.startswith("baseline")
    }
    full = len(small_synth.split("train"))
    assert counts == {
        "baseline-frac0.5-seed0": -(-full // 2),
        "baseline-frac0.5-seed1": -(-full // 2),
        "baseline-frac1-seed0": full,
        "baseline-frac1-seed1": full,
    }


def test_report_writes_tables_figures_and_a_page_chromium_renders(toy_runs, tmp_path):
    from playwright.sync_api import sync_playwright

    from eastmir.reporting.report import write_report

    studied = toy_runs[3]
    written = write_report(studied, tmp_path / "report", "toy study")
    md = written["markdown"].read_text()
    assert "## Test mAP, 50% of the training data" in md and "| EAsT_Final |" in md
    assert "## Paired differences against the Baseline (test mAP, same seed and data)" in md
    assert "\\begin{tabular}" in written["latex"].read_text() and "\\toprule" in written["latex"].read_text()
    assert written["csv"].read_text().splitlines()[0].startswith("system,teacher,train_fraction,seeds,mAP_mean")
    for kind in ("bars", "fractions", "per_class", "curves"):
        assert written[kind].stat().st_size > 5000, kind
    page = written["html"].read_text()
    assert page.count('<img class="figure"') == 4 and "<script" not in page and "http" not in page

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        tab = browser.new_page()
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(written["html"].as_uri())
        sizes = tab.eval_on_selector_all(
            "img.figure", "els => els.map(e => [e.naturalWidth, e.naturalHeight, e.getBoundingClientRect().width])"
        )
        rows = tab.eval_on_selector_all("table.results tr", "els => els.length")
        browser.close()
    assert len(sizes) == 4 and all(w > 100 and h > 100 and shown > 100 for w, h, shown in sizes), sizes
    assert rows >= 3 and errors == []


def _chromium() -> str | None:
    """Debian's chromium where it is installed, else None: playwright's own build (`make test` installs one of
    them: apt where there is apt, `playwright install chromium` elsewhere)."""
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_generalisation_scores_another_dataset_without_training(toy_runs, workdir, tmp_path):
    from eastmir import pipeline
    from eastmir.inference.predict import load_student
    from eastmir.metrics import masked_metrics

    other = pipeline.prepare("synth", tmp_path / "other", {"n_clips": 60, "clip_seconds": 2.5, "seed": 11}, False)
    run = workdir / "runs" / "baseline-frac1-seed0"
    labels, mask = other.labels(other.split("test"))
    first, second = (other.classes[i] for i in np.argsort(-(labels * mask).sum(0))[:2])  # classes with positives
    mapping = {first: (first,), second: (second, first)}
    blob = generalisation(run, other.root, mapping, progress=False)
    # the same figure by hand: the run's own predictions, the best of each target's classes, masked mAP
    student = load_student(run)
    clips = other.split("test")
    probs = np.stack(
        [p.probabilities for p in student.predict_files([other.audio_file(c) for c in clips], progress=False)]
    )
    index = {c: i for i, c in enumerate(student.classes)}
    scores = np.stack([probs[:, [index[s] for s in sources]].max(1) for sources in mapping.values()], axis=1)
    labels, mask = other.labels(clips)
    columns = [other.classes.index(t) for t in mapping]
    expected = masked_metrics(
        torch.from_numpy(scores), torch.from_numpy(labels[:, columns]), torch.from_numpy(mask[:, columns])
    )
    assert blob["test"]["mAP"] == pytest.approx(expected["mAP"]) and blob["clips"] == len(clips)
    assert not np.isnan(blob["test"]["mAP"])
    assert json.loads((run / "generalisation-synth.json").read_text())["mapping"][second] == [second, first]


def test_bar_charts_start_at_zero_keep_the_legend_off_the_bars_and_draw_no_bar_for_one_seed():
    """A gap of .01 between .60 and .61 is not drawn as a wall-to-wall difference; a single seed has no spread."""
    from eastmir.reporting.figures import bar_figure
    from eastmir.reporting.grid import NO_TEACHER, RunRecord, cells

    def record(system, teacher, seed, value):
        return RunRecord(
            Path(f"r-{system}-{seed}"), system, "mobile_fcn", teacher, 1.0, seed, {"mAP": value}, None, None
        )

    rows = [record("Baseline", NO_TEACHER, 0, 0.60)]
    rows += [record("EAsT_Final", "aisfx", s, 0.61 + 0.01 * s) for s in range(3)]  # three seeds
    rows += [record("EAsT_KD", "aisfx", 0, 0.62)]  # one seed
    fig = bar_figure(cells(rows), "mAP")
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0.0
    bars_with_spread = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars_with_spread) == 1  # EAsT_Final's three seeds; none for EAsT_KD's one
    legend = ax.get_legend()
    fig.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # beside the axes, not over the bars


def test_tables_name_the_runs_and_the_seeds_and_show_no_spread_for_one_seed(tmp_path):
    from eastmir.reporting.grid import NO_TEACHER, RunRecord, cells, grid_markdown
    from eastmir.reporting.tables import markdown_table

    def record(system, teacher, seed, value):
        test = {"mAP": value}
        return RunRecord(Path(f"r-{system}-{seed}"), system, "mobile_fcn", teacher, 1.0, seed, test, None, None)

    rows = [
        record("Baseline", NO_TEACHER, 0, 0.60),
        *(record("EAsT_Final", "aisfx", s, 0.61 + 0.01 * s) for s in (0, 1)),
    ]
    grid = grid_markdown(cells(rows), "mAP")
    assert "| Baseline | 0.600 (1 seed) |" in grid and "0.615 ± 0.007 (2 seeds)" in grid
    table = markdown_table(
        [{"name": "demo-baseline", "system": "Baseline", "student": "mobile_fcn", "test": {"mAP": 0.6}}]
    )
    assert table.splitlines()[0].endswith("| Run |") and table.splitlines()[2].endswith("| `demo-baseline` |")


def test_paired_differences_subtract_the_baseline_of_the_same_seed_and_data():
    from eastmir.reporting.grid import NO_TEACHER, RunRecord
    from eastmir.reporting.paired import paired_differences, paired_markdown

    def record(system, teacher, fraction, seed, value):
        test = {"mAP": value}
        return RunRecord(Path(f"r-{system}-{seed}"), system, "mobile_fcn", teacher, fraction, seed, test, None, None)

    base = {0: 0.50, 1: 0.60, 2: 0.40}  # seed 1 lucky, seed 2 not: the means' spread hides the pairs
    east = {0: 0.52, 1: 0.61, 2: 0.43}
    rows = [record("Baseline", NO_TEACHER, 1.0, s, v) for s, v in base.items()]
    rows += [record("EAsT_Final", "aisfx", 1.0, s, v) for s, v in east.items()]
    rows += [record("Baseline", NO_TEACHER, 0.5, 0, 0.30), record("EAsT_Final", "aisfx", 0.5, 0, 0.29)]
    rows += [record("EAsT_Final", "aisfx", 0.5, 1, 0.9)]  # no Baseline of seed 1 at 50 %: left out
    pairs = {p.fraction: p for p in paired_differences(rows)}
    full = pairs[1.0]
    assert full.differences == pytest.approx({0: 0.02, 1: 0.01, 2: 0.03}) and full.above == 3
    assert full.mean_std == pytest.approx((0.02, 0.01))
    assert pairs[0.5].differences == pytest.approx({0: -0.01}) and pairs[0.5].above == 0
    table = paired_markdown(list(pairs.values()))
    # 3 of 3 above, and yet the 95 % interval (t with 2 degrees of freedom) reaches below 0
    row = "| EAsT_Final | aisfx | 100% | 3 | +0.020 [−0.005, +0.045] | 0: +0.020, 1: +0.010, 2: +0.030 | 3 of 3 "
    assert row + "| not distinguishable | 5 |" in table
    row = "| EAsT_Final | aisfx | 50% | 1 | −0.010 (one seed: no interval) | 0: −0.010 | 0 of 1 "
    assert row + "| one seed: no interval | — |" in table
    assert paired_differences([r for r in rows if r.system != "Baseline"]) == []  # nothing to pair with
