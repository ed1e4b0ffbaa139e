"""CI's time budget from one run's JUnit files: each layer's time and the slowest tests, as Markdown.

    python bench/ci_time.py [.run/junit] [--top 10]

Reads <folder>/<layer>.xml as scripts/testbed/pytest-layer.sh leaves them. The figures behind
bench/results/ci-time.md; `.ci/run` prints each step's wall time itself.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

LAYERS = ("unit", "integration", "container")


def layer_cases(report: Path) -> tuple[float, list[tuple[float, str, str]]]:
    """The suite's time and (seconds, module, test) per test case of one JUnit file."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    cases = [(float(case.get("time", 0)), case.get("classname", "").rsplit(".", 1)[-1], case.get("name", ""))
             for suite in suites for case in suite.iter("testcase")]
    return sum(float(suite.get("time", 0)) for suite in suites), cases


def markdown(folder: Path, top: int) -> str:
    lines = ["| layer | tests | pytest time (s) |", "|---|---|---|"]
    slowest: list[tuple[float, str, str, str]] = []
    for layer in LAYERS:
        report = folder / f"{layer}.xml"
        if not report.is_file():
            lines.append(f"| {layer} | - | not run |")
            continue
        total, cases = layer_cases(report)
        lines.append(f"| {layer} | {len(cases)} | {total:.0f} |")
        slowest += [(seconds, layer, module, name) for seconds, module, name in cases]
    lines += ["", f"| {top} slowest | layer | s |", "|---|---|---|"]
    for seconds, layer, module, name in sorted(slowest, reverse=True)[:top]:
        lines.append(f"| {module}::{name} | {layer} | {seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=Path(".run/junit"))
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    print(markdown(args.folder, args.top))


if __name__ == "__main__":
    main()
