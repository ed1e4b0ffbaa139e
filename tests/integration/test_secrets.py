"""Secrets on real vLLM: API_KEY_FILE guards the API, MODELSCOPE_TOKEN opens a private hub,
and neither value shows up anywhere another user or a log reader could see it.

What "anywhere" covers: the serve log, the state folder the probes read, `render` output
and /proc/<pid>/cmdline (the process title, readable by every user) of the supervisor and
every vLLM process under it. /proc/<pid>/environ does hold VLLM_API_KEY for vLLM: that file is
readable only by the same user and root, the same trust as the secret file itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import FAST_CPU, MODEL_ID, ROOT, Server, child_env, start_server
from tests.support.modelscope_hub import LoopbackHub

pytestmark = [pytest.mark.integration, pytest.mark.starts_vllm]

KEY = "sk-test-7f3a9c"
TOKEN = "ms-test-4b1e0d"
SECRETS = (KEY, TOKEN)


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
    server = start_server(tmp, private_hub, tmp / "cache", API_KEY_FILE=str(key_file), MODELSCOPE_TOKEN=TOKEN)
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
                              MODEL_PROFILE="gemma-3-270m-fixture", API_KEY_FILE=str(key_file))
    assert with_key.returncode == 0, with_key.stdout + with_key.stderr
    assert json.loads(with_key.stdout)["ok"] is True
    without = run_entrypoint("smoke", "--url", secret_server.url, PLATFORM="cpu", MODEL_PROFILE="gemma-3-270m-fixture")
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
    assert json.loads(rendered.stdout)["env"]["VLLM_API_KEY"] == "***"

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
        vllm_has_key |= f"VLLM_API_KEY={KEY}" in environ.split("\0")
    assert vllm_has_key, "the key should reach vLLM through its environment"
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
