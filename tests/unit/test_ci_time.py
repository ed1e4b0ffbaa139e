"""bench/ci_time.py: layer times and the slowest tests from JUnit files."""

from __future__ import annotations

from pathlib import Path

from bench.ci_time import markdown

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" time="{total}">
{cases}
</testsuite></testsuites>"""


def write_layer(folder: Path, layer: str, times: dict[str, float]) -> None:
    cases = "\n".join(f'<testcase classname="tests.{layer}.test_x" name="{name}" time="{seconds}"/>'
                      for name, seconds in times.items())
    (folder / f"{layer}.xml").write_text(REPORT.format(total=sum(times.values()) + 1, cases=cases))


def test_layers_and_the_slowest_tests_across_layers(tmp_path: Path) -> None:
    write_layer(tmp_path, "unit", {"fast": 0.2, "slower": 3.0})
    write_layer(tmp_path, "integration", {"server": 120.0, "probe": 2.0})

    text = markdown(tmp_path, top=2)

    assert "| unit | 2 | 4 |" in text and "| integration | 2 | 123 |" in text
    assert "| container | - | not run |" in text
    slowest = text.split("| 2 slowest |", 1)[1]
    assert slowest.index("test_x::server") < slowest.index("test_x::slower")
    assert "test_x::probe" not in slowest
