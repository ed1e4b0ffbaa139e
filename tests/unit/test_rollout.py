"""`make rollout`'s script (scripts/rollout.py): bad options are one line and exit 2, before any
Docker call; the scale report (bench/scale_report.py) renders a result and the capacity plan."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.scale_report import capacity_plan, markdown
from testbed.paths import ROOT


@pytest.mark.parametrize(("args", "line"), [
    (["--drain", "0"], "rollout: --drain=0 is not allowed: a number of seconds > 0 and <= 3600"),
    (["--drain", "inf"], "rollout: --drain=inf is not allowed: a number of seconds > 0 and <= 3600"),
    (["--drain", "nan"], "rollout: --drain=nan is not allowed: a number of seconds > 0 and <= 3600"),
    (["--ready-timeout", "-5"], "rollout: --ready-timeout=-5 is not allowed: a number of seconds > 0 and <= 86400"),
    (["--drain", "soon"], "rollout: argument --drain: invalid float value: 'soon'"),
    (["--bogus"], "rollout: unrecognized arguments: --bogus"),
])
def test_bad_options_are_one_line_and_exit_2(args, line):
    done = subprocess.run([sys.executable, "scripts/rollout.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/nonexistent"})  # no docker reachable: it must stop before calling it
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [line]


def run(throughput: float, e2e: float) -> dict:
    return {"request_throughput": throughput, "output_throughput": throughput * 32, "median_e2el_ms": e2e,
            "median_ttft_ms": e2e / 4, "failed": 0}


def test_scale_report_says_whether_the_router_meets_its_goals():
    runs = {"probe_p50_ms": {"direct": 1.0, "router": 1.6}, "direct c=1": run(1.0, 900.0),
            "router, 1 replica c=1": run(1.0, 901.0), "router, 2 replicas c=1": run(1.0, 899.0),
            "direct c=8": run(4.0, 2000.0), "router, 1 replica c=8": run(3.8, 2100.0),
            "router, 2 replicas c=8": run(4.4, 1900.0), "spread c=1": [8, 8], "spread c=8": [30, 34]}
    fault = {"requests": 10, "failed": 0, "failed_statuses": [], "out_of_rotation_s": None, "bound_s": 150,
             "back_in_rotation_s": 3.0, "slowest_s": 2.0}
    result = {"machine": {"cpu_model": "test", "cores": 2}, "load_average": [1.0], "load_average_end": [2.0],
              "input_len": 128, "output_len": 32, "policy": "cache_aware", "overhead": runs, "killed": fault,
              "rollout": {**fault, "exit": 0, "seconds": 99.0, "log": ["rollout: done"]}, "hung": fault}
    report = markdown(result)
    assert "(GET /v1/models, 0.60 ms): under the 2 ms goal" in report
    assert "5.0 % lost (over the 3 % goal)" in report
    assert "not within 150 s" in report and "rollout: done" in report


def test_capacity_plan_keeps_one_spare_replica():
    # 0.34 req/s per card planned at 70 %: 0.238 req/s a replica; 1 req/s needs 5, plus one spare.
    assert "| 1 | 6 | 6 |" in "\n".join(capacity_plan(0.5))


def test_scale_report_of_a_run_cut_short_has_the_scenarios_it_got_to():
    runs = {"probe_p50_ms": {"direct": 1.0, "router": 1.2}, "spread c=1": [1, 1], "spread c=8": [4, 4],
            **{f"{target} c={c}": run(1.0, 900.0) for target in ("direct", "router, 1 replica", "router, 2 replicas")
               for c in (1, 8)}}
    rollout = {"requests": 40, "failed": 0, "failed_statuses": [], "slowest_s": 3.0, "exit": 0, "seconds": 200.0,
               "log": ["rollout: done: 2 replicas replaced"]}
    result = {"machine": {}, "load_average": [1.0], "load_average_end": [1.0], "input_len": 128, "output_len": 32,
              "policy": "cache_aware", "overhead": runs, "rollout": rollout}
    report = markdown(result)
    assert "| `make rollout` (c=8), 200.0 s, exit 0 | 40 | 0 |" in report
    assert "SIGKILLed (c=8) |" not in report and "SIGSTOPped (c=2) |" not in report
