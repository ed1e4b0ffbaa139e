"""Every route of vLLM's own app needs the key, except the guard's open list: the app is built
in-process without an engine (testbed/route_table_probe.py), with the guard through the
render's --middleware, by the project venv's vLLM (0.32, the test bed's) and the 0.23 target.
The guide's 0.18 is checked on the real server (tests/integration/test_secrets.py): its target
overlay lacks libraries its app imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.api_guard import OPEN_ROUTES
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from tests.unit.test_conformance import target_overlay

ROOT = Path(__file__).parents[2]
PROBE = ROOT / "testbed" / "route_table_probe.py"
KEY = "sk-routes-6a7b"


def route_answers(overlay: Path | None) -> dict:
    command = render_command(load_settings({"PLATFORM": "cpu", "API_KEY": KEY}), "/models/m")
    request = {"argv": command.argv, "env": command.env, "key": KEY}
    paths = [str(ROOT / "testbed"), str(ROOT)]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VLLM_", "BUNDLE_"))}
    env["PYTHONPATH"] = os.pathsep.join(([str(overlay / "site")] if overlay else []) + paths)
    done = subprocess.run([sys.executable, str(PROBE)], input=json.dumps(request), capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("vllm_version", ["0.32 (project venv)", "0.23.0"])
def test_every_route_off_the_open_list_needs_the_key(vllm_version):
    answer = route_answers(None if vllm_version.startswith("0.32") else target_overlay(vllm_version))
    routes = answer["routes"]
    paths = {route["path"] for route in routes}
    assert {"/v1/chat/completions", "/invocations", "/tokenize", "/detokenize"} <= paths, sorted(paths)
    open_ = [r for r in routes if r["path"] in OPEN_ROUTES]
    guarded = [r for r in routes if r["path"] not in OPEN_ROUTES]
    assert {r["path"] for r in open_} == set(OPEN_ROUTES)
    assert [r for r in open_ if r["without_key"] == 401] == []
    assert [r for r in guarded if r["without_key"] != 401] == [], answer["version"]
    assert [r for r in guarded if r["with_key"] == 401] == [], answer["version"]
