"""The structure the issue asked for, checked rather than described (import layers: `lint-imports`)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = sorted((ROOT / "src" / "eastmir").rglob("*.py"))
BENCHMARKS = sorted((ROOT / "benchmarks").rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_library_and_benchmarks_never_import_from_tests():
    offenders = [
        p for p in LIBRARY + BENCHMARKS if any(m.split(".")[0] in ("tests", "conftest") for m in imported_modules(p))
    ]
    assert not offenders


def test_store_entry_paths_are_spelled_in_one_place():
    """Per-clip cache paths were spelled out in 11 places; now the store names its entries."""
    pattern = re.compile(r"""f["'][^"']*\.npy["']""")
    spelled = {p.relative_to(ROOT / "src" / "eastmir").as_posix() for p in LIBRARY if pattern.search(p.read_text())}
    # the store's entries; a user's embedding files (precomputed); OpenMIC's shipped VGGish frames;
    # member names inside packed shards
    assert spelled <= {"data/store.py", "teachers/precomputed.py", "data/datasets/openmic.py", "data/streaming.py"}


def test_one_build_loop_decodes_audio():
    """The decode / skip / record-failures loop existed twice (features and extract)."""
    callers = {p.name for p in LIBRARY if "load_audio(" in p.read_text() and p.name != "audio.py"}
    # features and teachers hand load_audio to data.fill.fill as the reader; inference reads what it predicts
    # (predict's files are decoded in inference/files.py; export's calibration and parity clips in their modules)
    assert callers <= {"features.py", "base.py", "files.py", "calibration.py", "parity.py"}
    loops = [p.name for p in LIBRARY if "failures_file" in p.read_text()]
    assert "fill.py" in loops


def _string_key_lookups(path: Path) -> list[str]:
    """``config["x"]`` / ``cfg["x"]`` / ``….config["x"]`` subscripts with a string key in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            value = node.value
            name = value.id if isinstance(value, ast.Name) else value.attr if isinstance(value, ast.Attribute) else ""
            if name in ("config", "cfg", "section", "dist", "aug", "opt_cfg", "sched_cfg"):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_below_the_command_line_no_module_indexes_a_config_with_a_string_key():
    """The config was validated into a model and dumped back to a dict: 127 string-keyed lookups in 14 modules.
    Now a frozen RunConfig is passed down; plain dicts stay at the edges: the command line, and the config
    package's input side, which composes YAML (config/compose.py) and validates it into a RunConfig
    (config/rules.py)."""
    edges = {"compose.py", "rules.py"}
    command_line = ROOT / "src" / "eastmir" / "cli"
    offenders = [
        hit for p in LIBRARY if p.name not in edges and command_line not in p.parents for hit in _string_key_lookups(p)
    ]
    assert not offenders
    assert _string_key_lookups(ROOT / "src" / "eastmir" / "config" / "compose.py")  # the check finds them


def test_the_config_s_trip_through_fit_comes_back_to_a_file_at_most_8_times(
    small_synth, small_synth_embeddings, small_config
):
    """Following ``config`` from ``pipeline.fit`` through the calls that pass it on returned to a file it had left
    40 times before the typed config (the issue's count); ``tools/config_trip.py`` prints the trip."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_trip", ROOT / "tools" / "config_trip.py")
    trip_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trip_tool)
    calls = trip_tool.trace(small_config("east_final", "name=trip"))
    trip, _files, climbs, returns = trip_tool.measure(calls)
    assert trip[0] == "eastmir/pipeline/fit.py" and "eastmir/training/system.py" in trip
    assert returns <= 8 and climbs <= 8, trip


def test_the_repository_cites_only_its_own_documents():
    """The design notes outside the repository are not project files: nothing here points at them; the
    documents a reader needs are in ``docs/``."""
    roots = ["src", "tests", "benchmarks", "tools", "docs", "pyproject.toml", "Makefile", "README.md"]
    files = [p for r in roots for p in ([ROOT / r] if (ROOT / r).is_file() else (ROOT / r).rglob("*"))]
    pattern = re.compile(r"shared[/]|REFERENCE[.]md|DESIGN[.]md")  # (spelled so that a grep for them passes over)
    offenders = []
    for path in files:
        if not path.is_file() or "egg-info" in path.parts or path.suffix not in {"", ".py", ".md", ".toml", ".yaml"}:
            continue
        if path.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
    for name in ("architecture.md", "method.md", "studies.md"):
        assert (ROOT / "docs" / name).is_file()
    assert len((ROOT / "README.md").read_text().splitlines()) <= 400  # the user's guide; the detail is in docs/
