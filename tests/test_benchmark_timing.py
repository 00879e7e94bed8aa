"""The benchmarks' shared timing: every contender once per round, the order rotated, nothing measured apart."""

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "timing", Path(__file__).resolve().parents[1] / "benchmarks" / "timing.py"
)
timing = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(timing)


def test_contenders_run_once_per_round_in_rotated_order():
    calls: list[str] = []

    def contender(name: str, value: float):
        def run() -> float:
            calls.append(name)
            return value + len(calls)

        return run

    measured = timing.round_by_round({"a": contender("a", 0), "b": contender("b", 100), "c": contender("c", 200)}, 4)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert measured == {"a": [1, 6, 8, 10], "b": [102, 104, 109, 111], "c": [203, 205, 207, 212]}


def test_the_machine_line_pins_and_names_the_threads():
    import torch

    before = torch.get_num_threads()
    try:
        line = timing.machine(1)
        assert torch.get_num_threads() == 1 and "1 thread(s) pinned" in line and "load average" in line
    finally:
        torch.set_num_threads(before)
