"""Real vLLM on the CPU, the fixture Gemma 3 weights and a loopback ModelScope hub.

Starting vLLM takes minutes here, so one server (`shared_server`) serves every test
that only talks to it; lifecycle tests start their own. The shared server starts as the
session begins, and the tests that start no vLLM run first, beside its start (CI's time
budget: bench/results/ci-time.md). Every process gets the network guard, so nothing
leaves the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from entrypoint.state import StateDir
from testbed.fixture import FAST_CPU, MODEL_ID, fixture_weights
from testbed.modelscope_hub import LoopbackHub
from testbed.net import free_port
from testbed.paths import COMPILE_CACHE
from testbed.servers import child_env, resume_session

ROOT = Path(__file__).parents[2]
STARTUP_SECONDS = 1200  # a cold CPU start is minutes; this only bounds a hang
LAST_SHARED_SERVER_TEST = pytest.StashKey[bool]()

# A canary that looks every 2 s and fails after two missed 3 s answers: a verdict in seconds.
# The server outlives the verdict (report): its tests resume the engine and go on with it; the
# restart on a verdict is the container layer's (tests/container/test_router.py).
FAST_CANARY = {"CANARY_INTERVAL": "2", "CANARY_TIMEOUT": "3", "CANARY_FAILURES": "2", "CANARY_ACTION": "report"}
# For the tools' own in-process engines (perf's `bench throughput`/`bench latency`, accuracy's
# pooling runner): the engine core in the tool's process saves spawning a second interpreter that
# imports torch and vLLM again. Their subject is the tools' results, not vLLM's process layout;
# the operator's layout (engine core in its own process) runs in `test_offline_mode_answers` and
# in the container layer's `make bench` / `make eval`.
IN_PROCESS_ENGINE = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


@dataclass
class Server:
    """One `python -m entrypoint serve` process and its files."""

    process: subprocess.Popen
    state_dir: Path
    log_path: Path
    url: str
    probes_at_start: dict[str, int] = field(default_factory=dict)
    hub_counts_at_ready: dict[str, int] = field(default_factory=dict)
    model_cache: Path | None = None
    hub: LoopbackHub | None = None

    @property
    def state(self) -> StateDir:
        return StateDir(self.state_dir)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def probe(self, name: str) -> int:
        return run_probe(name, self.state_dir)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while self.state.ready() is None:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {STARTUP_SECONDS} s:\n{self.log()[-4000:]}")
            time.sleep(1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def run_probe(name: str, state_dir: Path) -> int:
    return subprocess.run([sys.executable, "-m", "healthcheck", name, "--state-dir", str(state_dir)],
                          cwd=ROOT, capture_output=True, timeout=30).returncode


def start_server(tmp: Path, hub: LoopbackHub, cache: Path, **overrides: str) -> Server:
    """Start the supervisor with the fast CPU settings; probe once right away."""
    port = free_port()
    state_dir = tmp / "state"
    log_path = tmp / "serve.log"
    # A free METRICS_PORT too: servers of one session (and of other checkouts) run side by side.
    env = child_env(**{**FAST_CPU, "HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": str(free_port()),
                       "MODEL_ID": MODEL_ID, "MODEL_CACHE_DIR": str(cache),
                       "COMPILE_CACHE_DIR": str(COMPILE_CACHE), "STATE_DIR": str(state_dir),
                       "MODELSCOPE_ENDPOINT": hub.endpoint, **overrides})
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "entrypoint", "serve"], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, state_dir, log_path, f"http://127.0.0.1:{port}")
    server.probes_at_start = {name: server.probe(name) for name in ("startup", "ready", "live")}
    return server


@pytest.fixture(scope="session")
def fixture_model() -> Path:
    """The real Gemma 3 270M weights, built once and cached by their inputs."""
    return fixture_weights()


@pytest.fixture(scope="session")
def hub(fixture_model: Path) -> Iterator[LoopbackHub]:
    with LoopbackHub(models={MODEL_ID: fixture_model}) as running:
        yield running


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MODEL_CACHE_DIR for the session: the first server fills it through the hub."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def warm_cache(model_cache: Path, hub: LoopbackHub) -> Path:
    """The session cache, complete (downloads through the hub only if no test did yet)."""
    env = child_env(MODEL_ID=MODEL_ID, MODEL_CACHE_DIR=str(model_cache), MODELSCOPE_ENDPOINT=hub.endpoint,
                    STATE_DIR=str(model_cache / "state"), PLATFORM="cpu")
    subprocess.run([sys.executable, "-m", "entrypoint", "download"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    return model_cache


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This layer's tests that start no vLLM first (they run beside the shared server's start),
    then the shared server's, then those that start vLLM themselves; the order within each is
    kept, and so are the places of other layers' tests (the hook sees the whole session)."""
    def group(item: pytest.Item) -> int:
        if "shared_server" in getattr(item, "fixturenames", ()):
            return 1
        return 2 if item.get_closest_marker("starts_vllm") else 0

    here = Path(__file__).parent
    places = [index for index, item in enumerate(items) if item.path.is_relative_to(here)]
    for index, item in zip(places, sorted((items[i] for i in places), key=group), strict=True):
        items[index] = item
    users = [item for item in items if "shared_server" in getattr(item, "fixturenames", ())]
    if users:
        users[-1].stash[LAST_SHARED_SERVER_TEST] = True


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Stop the shared server after its last test: the tests after it start their own servers,
    and one server takes about 6 GB here (a third beside two would crowd a 24 GB machine)."""
    server = getattr(item, "funcargs", {}).get("shared_server")
    if item.stash.get(LAST_SHARED_SERVER_TEST, False) and server is not None:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def shared_server_start(request: pytest.FixtureRequest,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server | None]:
    """The shared server, started (not waited for) as the session begins, if a test will use it.

    It has a hub of its own, so the counts its tests read are its own whatever runs beside it.
    """
    if not any("shared_server" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    with LoopbackHub(models={MODEL_ID: request.getfixturevalue("fixture_model")}) as own_hub:
        cache = tmp_path_factory.mktemp("shared-cache")
        server = start_server(tmp_path_factory.mktemp("shared"), own_hub, cache)
        server.model_cache = cache
        server.hub = own_hub
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def shared_server(shared_server_start: Server | None) -> Server:
    """The server most tests talk to, for the whole session: started from nothing (a cache
    of its own), weights through its hub; the hub's counts at ready are kept for the tests."""
    assert shared_server_start is not None  # started for every session with a test that asks for it
    server = shared_server_start
    server.wait_ready()
    if not server.hub_counts_at_ready:
        server.hub_counts_at_ready = {kind: server.hub.count(kind) for kind in ("listing", "file")}
    return server


def resume_and_stop(server: Server) -> None:
    """SIGCONT every process of vLLM's session (a frozen one would never see SIGTERM), then stop."""
    pid = (server.state.state() or {}).get("server_pid")
    if pid:
        resume_session(pid)
    server.stop()
