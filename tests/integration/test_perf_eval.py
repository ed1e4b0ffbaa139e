"""eval/perf_eval.py end to end: the quick preset of every workload against the shared real vLLM server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.fixture import FAST_CPU
from testbed.servers import child_env
from tests.integration.conftest import IN_PROCESS_ENGINE, ROOT, Server

pytestmark = pytest.mark.integration
RUN_SECONDS = 1800  # two in-process engine starts and ~20 short requests; this only bounds a hang
# Two of the quick preset's sweep levels: a sweep still, one `vllm bench serve` process fewer.
SWEEP_LEVELS = [1, 2]


@pytest.fixture(scope="module")
def quick_run(shared_server: Server, fixture_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick-preset run of all four workloads; its folder, output and exit status."""
    results = tmp_path_factory.mktemp("perf")
    port = shared_server.url.rsplit(":", 1)[1]
    # the server's own settings, so the in-process engine runs with its flags
    env = child_env(**FAST_CPU, **IN_PROCESS_ENGINE, HOST="127.0.0.1", PORT=port,
                    STATE_DIR=str(shared_server.state_dir), MODEL_CACHE_DIR=str(results / "cache"))
    done = subprocess.run([sys.executable, "eval/perf_eval.py", "--preset", "quick", "--model", str(fixture_model),
                           "--sweep-levels", ",".join(map(str, SWEEP_LEVELS)), "--results", str(results),
                           "--run-name", "quick", "--bandwidth-seconds", "0.5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_SECONDS)
    run_dir = results / "quick"
    return {"done": done, "dir": run_dir,
            "data": json.loads((run_dir / "perf.json").read_text()) if done.returncode == 0 else None}


def test_quick_preset_exits_zero_and_announces_each_step(quick_run: dict[str, Any]) -> None:
    done = quick_run["done"]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[1/6]" in done.stdout and "[6/6]" in done.stdout


def test_every_workload_has_non_zero_throughput(quick_run: dict[str, Any]) -> None:
    results = quick_run["data"]["results"]
    assert results["throughput"]["requests_per_s"] > 0
    assert results["throughput"]["output_tokens_per_s"] > 0
    assert results["online"]["request_throughput"] > 0
    assert results["online"]["completed"] == results["online"]["load"]["num_prompts"]
    assert results["online"]["failed"] == 0
    assert results["latency"]["serve"]["guide_metrics"]["mean_tpot_ms"] > 0
    assert results["latency"]["engine"]["mean_total_ms"] > 0
    assert [row["load"]["concurrency"] for row in results["sweep"]] == SWEEP_LEVELS
    assert all(row["output_throughput"] > 0 and row["failed"] == 0 for row in results["sweep"])


def test_report_names_weights_dtype_and_the_guide_figures(quick_run: dict[str, Any], fixture_model: Path) -> None:
    data = quick_run["data"]
    assert data["environment"]["weights"] == str(fixture_model)
    assert data["environment"]["dtype"] == "float32"
    assert "--dtype" in data["engine_args"] and "float32" in data["engine_args"]
    markdown = (quick_run["dir"] / "perf.md").read_text()
    for heading in ("## 5.1", "## 5.2", "## 5.3", "## Concurrency sweep", "## Decode roofline"):
        assert heading in markdown
    for guide_figure in ("1,135.51", "22,553.97", "79.18"):
        assert guide_figure in markdown
    assert str(fixture_model) in markdown and "float32" in markdown


def test_roofline_has_a_bound_and_a_measured_fraction(quick_run: dict[str, Any]) -> None:
    rows = quick_run["data"]["roofline"]["rows"]
    ours = rows["ours: cpu, float32"]
    assert ours["bytes_per_step"] > 1e9  # ~268 M parameters x 4 bytes
    assert ours["bandwidth_source"] == "measured copy" and ours["bound_tokens_per_s"] > 0
    assert ours["fraction_of_bound"] > 0


def test_plots_are_png_files(quick_run: dict[str, Any]) -> None:
    plots = quick_run["data"]["plots"]
    assert set(plots) == {"throughput_vs_concurrency.png", "latency_vs_concurrency.png", "latency_distribution.png"}
    for name in plots:
        assert (quick_run["dir"] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
