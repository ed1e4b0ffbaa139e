"""Secrets on real vLLM: API_KEY_FILE guards every route of the API (the bundle's guard through
vLLM's --middleware), its keys rotate without a restart, admission control sheds a burst, and
MODELSCOPE_TOKEN opens a private hub; no secret shows up anywhere another user or a log reader
could see it.

What "anywhere" covers: the serve log, the state folder the probes read, `render` output
and /proc/<pid>/cmdline (the process title, readable by every user) of the supervisor and
every vLLM process under it. vLLM's environment holds the key file's path, not the keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from testbed.fixture import FAST_CPU, MODEL_ID, PROFILE
from testbed.modelscope_hub import LoopbackHub
from testbed.servers import child_env
from tests.integration.conftest import ROOT, Server, start_server

pytestmark = [pytest.mark.integration, pytest.mark.starts_vllm]

KEY = "sk-test-7f3a9c"
NEXT_KEY = "sk-next-2d8e41"
TOKEN = "ms-test-4b1e0d"
SECRETS = (KEY, NEXT_KEY, TOKEN)
# One request in flight and one waiting: the burst test's bound, low enough for the CPU.
ADMISSION = {"ADMISSION_CONTROL": "true", "ADMIT_MAX_RUNNING": "1", "ADMIT_MAX_QUEUED": "1",
             "ADMIT_QUEUE_TIMEOUT": "60"}
# Bounds a hang only: the guard looks at the file's stat once a second (README); the time taken is printed.
ROTATION_SECONDS = 120
OPEN_ROUTES = {"/health", "/metrics"}


@pytest.fixture(scope="module")
def private_hub(fixture_model: Path) -> Iterator[LoopbackHub]:
    """A hub that answers only requests carrying TOKEN, as ModelScope does for a private model."""
    with LoopbackHub(models={MODEL_ID: fixture_model}, token=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The key as a Docker/Kubernetes secret file: one trailing newline."""
    path = tmp_path_factory.mktemp("secrets") / "api_key"
    path.write_text(f"{KEY}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory: pytest.TempPathFactory, private_hub: LoopbackHub,
                  key_file: Path) -> Iterator[Server]:
    """A server whose weights come from the private hub into an empty cache, its API behind the key."""
    tmp = tmp_path_factory.mktemp("secret-server")
    server = start_server(tmp, private_hub, tmp / "cache", API_KEY_FILE=str(key_file), MODELSCOPE_TOKEN=TOKEN,
                          **ADMISSION)
    server.wait_ready()
    yield server
    server.stop()


def run_entrypoint(*args: str, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "entrypoint", *args], cwd=ROOT, env=child_env(**settings),
                          capture_output=True, text=True, timeout=300)


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant (vLLM runs in a session of its own under the supervisor)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # exited while we looked
            continue
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret shows in {where}"


def test_the_api_wants_the_key_and_health_stays_open(secret_server):
    url = secret_server.url
    assert requests.get(f"{url}/v1/models", timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer sk-wrong"}
    assert requests.get(f"{url}/v1/models", headers=wrong, timeout=30).status_code == 401
    answer = requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["data"][0]["id"] == "gemma-3-270m-it"
    assert requests.get(f"{url}/health", timeout=30).status_code == 200


def test_the_supervisor_got_ready_through_the_key(secret_server):
    # Readiness polls /v1/models and the smoke check chats: both behind the key.
    assert secret_server.state.ready() is not None
    assert "smoke OK" in secret_server.log()


def test_probes_need_no_key(secret_server):
    assert {name: secret_server.probe(name) for name in ("startup", "ready", "live")} == \
        {"startup": 0, "ready": 0, "live": 0}


def test_smoke_command_sends_the_key_from_settings(secret_server, key_file):
    with_key = run_entrypoint("smoke", "--url", secret_server.url, "--json", PLATFORM="cpu",
                              MODEL_PROFILE=PROFILE, API_KEY_FILE=str(key_file))
    assert with_key.returncode == 0, with_key.stdout + with_key.stderr
    assert json.loads(with_key.stdout)["ok"] is True
    without = run_entrypoint("smoke", "--url", secret_server.url, PLATFORM="cpu", MODEL_PROFILE=PROFILE)
    assert without.returncode == 1 and "set API_KEY or API_KEY_FILE" in without.stdout
    assert_no_secret(with_key.stdout + with_key.stderr + without.stdout + without.stderr, "smoke output")


def test_no_secret_in_log_state_render_or_process_titles(secret_server, key_file):
    assert_no_secret(secret_server.log(), "the serve log")
    assert "effective settings {" in secret_server.log()
    for path in secret_server.state_dir.iterdir():
        assert_no_secret(path.read_text(errors="replace"), f"state file {path.name}")
    rendered = run_entrypoint("render", "--format", "json", **FAST_CPU, API_KEY_FILE=str(key_file),
                              MODELSCOPE_TOKEN=TOKEN)
    assert rendered.returncode == 0, rendered.stderr
    assert_no_secret(rendered.stdout + rendered.stderr, "render output")
    assert json.loads(json.loads(rendered.stdout)["env"]["BUNDLE_API_GUARD"])["key_file"] == str(key_file)

    tree = process_tree(secret_server.process.pid)
    assert len(tree) >= 3  # the supervisor, vLLM's API server and its engine core
    vllm_has_key = False
    for pid in tree:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:  # exited while we looked
            continue
        assert_no_secret(cmdline, f"/proc/{pid}/cmdline")
        # The keys came from the file, which vLLM's guard reads itself (the test gave the token inline).
        assert KEY not in environ and NEXT_KEY not in environ, f"a key shows in /proc/{pid}/environ"
        vllm_has_key |= "--middleware" in cmdline and "BUNDLE_API_GUARD=" in environ
    assert vllm_has_key, "vLLM should load the guard, configured through its environment"
    # The supervisor itself read the key from the file: its own environment holds only the path.
    supervisor_env = Path(f"/proc/{secret_server.process.pid}/environ").read_bytes().decode(errors="replace")
    assert KEY not in supervisor_env


def test_the_private_hub_got_the_token(secret_server, private_hub):
    served = [info for info in private_hub.history if info.kind in ("listing", "file")]
    assert served and all(info.status in (200, 206) for info in served)


def test_a_private_model_without_a_token_fails_in_one_line(tmp_path, private_hub):
    settings = {"MODEL_ID": MODEL_ID, "MODEL_CACHE_DIR": str(tmp_path / "cache"), "PLATFORM": "cpu",
                "MODELSCOPE_ENDPOINT": private_hub.endpoint, "STATE_DIR": str(tmp_path / "state")}
    for token, given in ((None, "no token given"), ("ms-wrong", "the token given was refused")):
        done = run_entrypoint("download", **settings, **({"MODELSCOPE_TOKEN": token} if token else {}))
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "the hub refused access" in lines[0] and given in lines[0]
        assert "MODELSCOPE_TOKEN" in lines[0] and "Traceback" not in done.stderr


def guard_paths(url: str) -> list[tuple[str, str]]:
    """(path, method) of every route the running vLLM lists in its own OpenAPI table, {params} filled."""
    table = requests.get(f"{url}/openapi.json", headers=bearer(KEY), timeout=30)
    assert table.status_code == 200
    pairs = []
    for path, operations in table.json()["paths"].items():
        while "{" in path:
            path = path[:path.index("{")] + "x" + path[path.index("}") + 1:]
        pairs += [(path, method.upper()) for method in operations if method != "head"]
    return sorted(pairs)


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def status(url: str, path: str, method: str = "GET", key: str | None = None) -> int:
    return requests.request(method, f"{url}{path}", json={}, headers=bearer(key), timeout=60).status_code


def test_every_route_of_the_running_app_needs_the_key_but_the_open_list(secret_server):
    url = secret_server.url
    routes = guard_paths(url)
    paths = {path for path, _ in routes}
    assert {"/invocations", "/tokenize", "/detokenize", "/v1/chat/completions", "/version"} <= paths
    for path in OPEN_ROUTES:
        assert status(url, path) == 200, path
    refused = {(path, method): status(url, path, method) for path, method in routes if path not in OPEN_ROUTES}
    assert {route: code for route, code in refused.items() if code != 401} == {}
    accepted = {(path, method): status(url, path, method, KEY) for path, method in routes if path not in OPEN_ROUTES}
    assert {route: code for route, code in accepted.items() if code == 401} == {}
    chat = {"model": "gemma-3-270m-it", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert requests.post(f"{url}/invocations", json=chat, timeout=60).status_code == 401
    answer = requests.post(f"{url}/invocations", json=chat, headers=bearer(KEY), timeout=120)
    assert answer.status_code == 200 and answer.json()["choices"]
    body = requests.post(f"{url}/tokenize", json={"prompt": "Hi"}, timeout=30).json()
    assert body["error"]["type"] == "authentication_error" and KEY not in json.dumps(body)


def replace_file(path: Path, text: str) -> None:
    """What a secret mount does on an update: a whole new file in the old one's place."""
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(text)
    fresh.chmod(0o600)
    os.replace(fresh, path)


def until(check, seconds: float, keep) -> float:
    """Seconds until `check()` holds, calling `keep()` (which must hold throughout) meanwhile."""
    began = time.monotonic()
    while not check():
        assert keep(), "a request failed during the change"
        assert time.monotonic() - began < seconds, f"not in effect within {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - began


def test_a_rotated_key_works_without_a_restart(secret_server, key_file):
    url, pid = secret_server.url, (secret_server.state.state() or {}).get("server_pid")
    works = {key: (lambda key=key: status(url, "/v1/models", key=key) == 200) for key in (KEY, NEXT_KEY)}
    try:
        replace_file(key_file, f"# both while clients move over\n{KEY}\n{NEXT_KEY}\n")
        added = until(works[NEXT_KEY], ROTATION_SECONDS, keep=works[KEY])
        replace_file(key_file, f"{NEXT_KEY}\n")
        removed = until(lambda: not works[KEY](), ROTATION_SECONDS, keep=works[NEXT_KEY])
        print(f"a second key in effect after {added:.1f} s, the old one refused after {removed:.1f} s")
        assert status(url, "/v1/models", key=KEY) == 401
    finally:
        replace_file(key_file, f"{KEY}\n")
        until(works[KEY], ROTATION_SECONDS, keep=lambda: True)
    assert (secret_server.state.state() or {}).get("server_pid") == pid  # the same vLLM throughout
    changes = [line for line in secret_server.log().splitlines() if "API_KEY_FILE=" in line and " changed: " in line]
    assert len(changes) == 3, changes  # each change logged once
    assert_no_secret(secret_server.log(), "the serve log")


def test_a_burst_past_the_bounds_gets_fast_429s_and_the_probes_stay_green(secret_server):
    url = secret_server.url
    chat = {"model": "gemma-3-270m-it", "messages": [{"role": "user", "content": "Count to twenty."}],
            "max_tokens": 16, "ignore_eos": True}

    def one(_: int) -> requests.Response:
        return requests.post(f"{url}/v1/chat/completions", json=chat, headers=bearer(KEY), timeout=300)

    with ThreadPoolExecutor(8) as pool:
        burst = pool.map(one, range(8))
        health_during = [status(url, "/health") for _ in range(3)]
        answers = list(burst)
    codes = sorted(answer.status_code for answer in answers)
    shed = [answer for answer in answers if answer.status_code == 429]
    assert set(codes) <= {200, 429} and shed and codes.count(200) >= 2, codes  # one ran, one waited at least
    assert all(answer.headers["Retry-After"].isdigit() for answer in shed)
    assert all(answer.json()["error"]["code"] == "over_capacity" for answer in shed)
    assert all(answer.json()["choices"][0]["message"]["content"] for answer in answers if answer.status_code == 200)
    assert health_during == [200, 200, 200]
    assert {name: secret_server.probe(name) for name in ("startup", "ready", "live")} == \
        {"startup": 0, "ready": 0, "live": 0}
    metrics = requests.get(f"{url}/metrics", timeout=30).text
    assert 'ascend_serve_api_rejected_total{reason="over_capacity"}' in metrics
    assert_no_secret(metrics, "vLLM's /metrics")
