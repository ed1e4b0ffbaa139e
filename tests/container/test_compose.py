"""`make up` / `docker compose run --rm smoke` / `make down` on a real Docker engine."""

from __future__ import annotations

import subprocess

import requests

from tests.container.conftest import docker, make


def test_make_up_returns_only_when_docker_says_healthy(deployment):
    assert deployment.up_result.returncode == 0
    assert deployment.inspect()["State"]["Health"]["Status"] == "healthy"
    assert f"http://127.0.0.1:{deployment.port}" in deployment.up_result.stdout


def test_compose_smoke_service_passes(deployment):
    done = make("smoke", *deployment.vars)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke OK" in done.stdout


def test_seed_smoke_requests_on_the_published_port(deployment):
    models = requests.get(f"{deployment.url}/v1/models", timeout=30)
    assert models.status_code == 200 and "gemma-3-270m-it" in [m["id"] for m in models.json()["data"]]
    chat = requests.post(f"{deployment.url}/v1/chat/completions", timeout=120, json={
        "model": "gemma-3-270m-it", "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}]})
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"].strip()


def test_runs_as_a_non_root_user_with_an_init(deployment):
    container = deployment.container()
    assert docker("exec", container, "id", "-u").strip() == "1000"
    assert "tini" in docker("exec", container, "cat", "/proc/1/cmdline")


def test_effective_settings_are_logged_once_as_json(deployment):
    done = subprocess.run(["docker", "logs", deployment.container()], capture_output=True, text=True, timeout=60)
    logs = done.stdout + done.stderr  # the supervisor logs to stderr, vLLM to stdout
    lines = [line for line in (logs + "\n").splitlines() if "effective settings {" in line]
    assert len(lines) == 1 and '"PLATFORM": "cpu"' in lines[0]
