"""`entrypoint serve` from nothing to ready on real vLLM CPU, weights through the loopback hub."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from entrypoint.weights import MARKER
from testbed.fixture import MODEL_ID, PROFILE
from testbed.servers import child_env
from tests.integration.conftest import ROOT
from tests.support.guide_checks import assert_guide_smoke_requests

pytestmark = pytest.mark.integration


def test_serve_goes_from_nothing_to_ready_through_the_hub(shared_server):
    marker = shared_server.state.ready()
    assert marker and marker["url"] == shared_server.url
    assert shared_server.hub_counts_at_ready["listing"] >= 1 and shared_server.hub_counts_at_ready["file"] >= 1
    folder = shared_server.model_cache / "models" / MODEL_ID / "master"
    files = json.loads((folder / MARKER).read_text())["files"]
    assert {"config.json", "model.safetensors"} <= {f["path"] for f in files}
    log = shared_server.log()
    assert "effective settings {" in log and "smoke OK" in log


def test_models_and_chat_answer(shared_server):
    assert_guide_smoke_requests(shared_server.url)


def test_the_weights_are_real_gemma(shared_server):
    # The base model completes a Q/A pattern correctly: real weights, real tokenizer with BOS.
    done = requests.post(f"{shared_server.url}/v1/completions", timeout=120, json={
        "model": "gemma-3-270m-it", "prompt": "Q: What is the capital of France?\nA:", "temperature": 0,
        "max_tokens": 8})
    assert done.status_code == 200 and "Paris" in done.json()["choices"][0]["text"]


def test_probes_fail_before_ready_and_pass_after(shared_server):
    assert shared_server.probes_at_start == {"startup": 1, "ready": 1, "live": 1}
    assert {name: shared_server.probe(name) for name in ("startup", "ready", "live")} == \
        {"startup": 0, "ready": 0, "live": 0}


def test_smoke_command_against_the_server(shared_server):
    env = child_env(PLATFORM="cpu", MODEL_PROFILE=PROFILE)
    done = subprocess.run([sys.executable, "-m", "entrypoint", "smoke", "--url", shared_server.url, "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_smoke_says_what_was_asked_and_what_came_back(shared_server):
    env = child_env(PLATFORM="cpu", SMOKE_EXPECT="^Berlin$")
    done = subprocess.run([sys.executable, "-m", "entrypoint", "smoke", "--url", shared_server.url],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout.startswith("smoke FAILED") and "capital of France" in done.stdout and "'^Berlin$'" in done.stdout
