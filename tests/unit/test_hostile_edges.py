"""Round three of the hostile inputs (testbed/hostile_edges.py): the first case of each
class here, every case in `make bench-reliability` (bench/reliability.md)."""

from __future__ import annotations

import pytest

from testbed import hostile_edges


@pytest.fixture(scope="module")
def servers():
    with hostile_edges.servers() as running:
        yield running


@pytest.mark.parametrize("source", hostile_edges.CLASSES, ids=lambda source: source.__name__)
def test_the_first_case_of_each_class_is_handled(source, servers, tmp_path):
    case = source(servers)[0]
    outcome = hostile_edges.run_case(case, tmp_path)
    assert outcome.handled, (case.name, outcome)
