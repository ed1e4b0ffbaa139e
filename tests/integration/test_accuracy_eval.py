"""`python eval/accuracy_eval.py` against the real (float32) server, quick and float32-only for CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.fixture import FAST_CPU
from testbed.net import free_port
from testbed.servers import child_env
from tests.integration.conftest import IN_PROCESS_ENGINE, ROOT, Server

pytestmark = pytest.mark.integration


def accuracy_eval(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "eval" / "accuracy_eval.py"), *args], cwd=ROOT,
                          env=child_env(**FAST_CPU, **IN_PROCESS_ENGINE), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def report(shared_server: Server, fixture_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("results")
    done = accuracy_eval("--url", shared_server.url, "--model", str(fixture_model), "--quick",
                         "--parity-dtypes", "float32", "--results", str(results), "--run-name", "ci")
    assert done.returncode == 0, done.stderr[-4000:]
    data = json.loads((results / "ci" / "accuracy.json").read_text())
    return {"data": data, "markdown": (results / "ci" / "accuracy.md").read_text()}


def test_outputs_are_deterministic(report: dict):
    det = report["data"]["determinism"]
    assert det["passed"] and det["rounds"] == 3
    for item in det["items"]:
        assert len(item["outputs"]) == 3 and len(set(item["outputs"])) == 1


def test_every_task_is_listed_with_the_models_answer(report: dict):
    result = report["data"]["tasks"]
    assert {item["category"] for item in result["items"]} == {"arithmetic", "facts", "logic", "chinese"}
    assert all(isinstance(item["correct"], bool) and "answer" in item for item in result["items"])
    assert result["scores"]["all"]["total"] == len(result["items"])


def test_float32_parity_passes_one_percent(report: dict):
    columns = report["data"]["parity"]["by_dtype"]["float32"]
    for name in ("logits", "hidden_states"):
        column = columns[name]
        assert column["passed"] and column["relative_error"] <= 0.01, column
        assert column["cosine_similarity"] > 0.999 and column["values"] > 0


def test_report_says_what_was_measured(report: dict):
    env = report["data"]["environment"]
    assert env["dtype"] == "float32" and env["weights"]
    text = report["markdown"]
    for heading in ("## 1. Determinism: PASS", "## 2. Task set", "### float32: served", "| cosine_similarity |"):
        assert heading in text
    assert report["data"]["passed"]


def test_server_down_is_one_line_and_exit_1(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    done = accuracy_eval("--url", url, "--skip-parity", "--results", str(tmp_path), timeout=120)
    assert done.returncode == 1
    assert url in done.stderr and "Traceback" not in done.stderr
