"""Several nodes per model: the role each LeaderWorkerSet pod takes from LWS's variables, its
render, its refusals, and the probes and supervisor of a headless worker."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from entrypoint.child import ChildProcess
from entrypoint.errors import SettingsError
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from entrypoint.state import StateDir
from entrypoint.supervisor import join_group
from healthcheck.probes import run_probe
from testbed.net import reply

NPU = {"PLATFORM": "npu", "MODEL_CACHE_DIR": "/models"}
GROUP = {**NPU, "LWS_GROUP_SIZE": "2", "LWS_LEADER_ADDRESS": "gemma-0.gemma.serving", "TENSOR_PARALLEL_SIZE": "8",
         "PIPELINE_PARALLEL_SIZE": "2"}
LEADER = {**GROUP, "LWS_WORKER_INDEX": "0"}
WORKER = {**GROUP, "LWS_WORKER_INDEX": "1"}


def argv(environ: dict[str, str]) -> list[str]:
    return render_command(load_settings(environ), "/models/m").argv


def flag(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def errors(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    return caught.value.lines


def test_without_lws_variables_one_node_serves_as_before():
    settings = load_settings(NPU)
    assert settings.node_role == "server" and settings.distributed_executor_backend is None
    assert not {"--nnodes", "--node-rank", "--master-addr", "--headless", "--distributed-executor-backend"} & set(
        argv(NPU))


def test_the_leader_serves_with_the_groups_flags():
    words = argv(LEADER)
    assert load_settings(LEADER).node_role == "leader"
    assert (flag(words, "--nnodes"), flag(words, "--node-rank"), flag(words, "--master-addr")) == (
        "2", "0", "gemma-0.gemma.serving")
    assert flag(words, "--distributed-executor-backend") == "mp" and flag(words, "--pipeline-parallel-size") == "2"
    assert "--headless" not in words


def test_a_worker_runs_headless_with_its_rank():
    words = argv(WORKER)
    assert load_settings(WORKER).node_role == "worker"
    assert flag(words, "--node-rank") == "1" and words[-1] == "--headless"
    # Same model, sizes and meeting point as the leader: only the rank and --headless differ.
    leader = argv(LEADER)
    rank = leader.index("--node-rank") + 1
    assert words == [*leader[:rank], "1", *leader[rank + 1:], "--headless"]


def test_the_backend_comes_from_the_group_unless_set():
    resolved = load_settings(LEADER)
    assert resolved.distributed_executor_backend == "mp"
    assert "HCCL_OP_EXPANSION_MODE" in render_command(resolved, "/m").env


def test_the_leader_url_a_worker_waits_for():
    assert load_settings(WORKER).leader_url == "http://gemma-0.gemma.serving:8000"
    assert load_settings({**WORKER, "LWS_LEADER_ADDRESS": "fd00::1"}).leader_url == "http://[fd00::1]:8000"


@pytest.mark.parametrize(("environ", "start"), [
    ({**WORKER, "LWS_WORKER_INDEX": "one"}, "LWS_WORKER_INDEX='one': expected an integer"),
    ({**WORKER, "LWS_GROUP_SIZE": "1"}, "LWS_GROUP_SIZE='1': "),
    ({**WORKER, "LWS_WORKER_INDEX": "2"}, "LWS_WORKER_INDEX='2': not below LWS_GROUP_SIZE (2)"),
    ({**NPU, "LWS_GROUP_SIZE": "2"}, "LWS_GROUP_SIZE='2': LWS_WORKER_INDEX and LWS_LEADER_ADDRESS unset"),
    ({**WORKER, "DATA_PARALLEL_SIZE": "2"}, "DATA_PARALLEL_SIZE='2': "),
    ({**WORKER, "TENSOR_PARALLEL_SIZE": "3", "PIPELINE_PARALLEL_SIZE": "1"}, "LWS_GROUP_SIZE='2': TENSOR_PARALLEL"),
    ({**WORKER, "DISTRIBUTED_EXECUTOR_BACKEND": "ray"}, "DISTRIBUTED_EXECUTOR_BACKEND='ray': "),
    ({**WORKER, "PLATFORM": "cpu"}, "LWS_GROUP_SIZE='2': several nodes per model need an accelerator"),
    ({**WORKER, "LWS_LEADER_ADDRESS": "-x.serving"}, "LWS_LEADER_ADDRESS='-x.serving': expected a host name"),
    ({**WORKER, "EXTRA_ARGS": "--nnodes 3"}, "EXTRA_ARGS='--nnodes': managed by LWS_GROUP_SIZE"),
])
def test_a_bad_group_is_one_line_naming_the_variable(environ, start):
    lines = errors(environ)
    assert len(lines) == 1 and lines[0].startswith(start), lines
    assert "allowed" in lines[0] or "set that instead" in lines[0]


def test_the_cli_exits_2_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **WORKER, "LWS_WORKER_INDEX": "x"}
    done = subprocess.run([sys.executable, "-m", "entrypoint", "render"], env=env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "LWS_WORKER_INDEX='x'" in lines[0]


# --- a worker's probes and its join -------------------------------------------------------------

def worker_state(folder: Path, pid: int) -> StateDir:
    state = StateDir(folder)
    state.write_state(url="http://127.0.0.1:8000", served_model_name="m", supervisor_pid=1, server_pid=pid,
                      role="worker")
    return state


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def test_a_workers_live_asks_its_vllm_process_not_an_api(tmp_path):
    worker_state(tmp_path, pid=os.getpid())
    ok, line = run_probe("live", tmp_path, time.monotonic() + 5)
    assert ok, line
    worker_state(tmp_path, pid=dead_pid())
    ok, line = run_probe("live", tmp_path, time.monotonic() + 5)
    assert not ok and "not running" in line


def test_a_workers_ready_needs_its_marker_and_its_process(tmp_path):
    state = worker_state(tmp_path, pid=os.getpid())
    assert not run_probe("ready", tmp_path, time.monotonic() + 5)[0]
    assert not run_probe("startup", tmp_path, time.monotonic() + 5)[0]
    state.mark_ready(url="http://127.0.0.1:8000", served_model_name="m", role="worker",
                     server_pid=os.getpid(), leader="http://lead:8000", at=time.time())
    ok, line = run_probe("ready", tmp_path, time.monotonic() + 5)
    assert ok and "joined http://lead:8000" in line
    assert run_probe("startup", tmp_path, time.monotonic() + 5)[0]


def test_a_role_the_supervisor_never_writes_fails_the_probe(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"url": "http://127.0.0.1:1", "served_model_name": "m",
                                                     "supervisor_pid": 1, "server_pid": 2, "role": "boss"}))
    ok, line = run_probe("live", tmp_path, time.monotonic() + 5)
    assert not ok and "'role'" in line


class Leader(http.server.BaseHTTPRequestHandler):
    """A leader that serves: /health 200 and the model listed."""

    def do_GET(self):
        reply(self, json.dumps({"data": [{"id": "gemma-3-270m-it"}]}).encode() if self.path == "/v1/models" else b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def leader():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Leader)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_worker_marks_ready_once_its_leader_serves(tmp_path, leader):
    settings = load_settings({**WORKER, "LWS_LEADER_ADDRESS": "127.0.0.1", "PORT": str(leader.server_port),
                              "STATE_DIR": str(tmp_path)})
    child = ChildProcess([sys.executable, "-c", "import time; time.sleep(60)"], {"PATH": "/usr/bin:/bin"})
    try:
        join_group(settings, child, StateDir(tmp_path), time.monotonic() + 30)
        marker = StateDir(tmp_path).ready()
        assert marker is not None and marker["role"] == "worker" and marker["server_pid"] == child.pid
        assert marker["leader"] == f"http://127.0.0.1:{leader.server_port}"
    finally:
        child.stop(5)
