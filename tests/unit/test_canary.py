"""The canary's judgement against a loopback stand-in for vLLM's /metrics and /v1/completions
(the real engine, stopped and busy, is in tests/integration/test_server_lifecycle.py)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from entrypoint.canary import RETRY_SECONDS, Canary, EngineLoad, parse_load, start_canary
from entrypoint.child import ChildProcess
from entrypoint.errors import SettingsError
from entrypoint.resolver import load_settings
from entrypoint.state import StateDir
from entrypoint.supervisor import watch

# The shape of vLLM 0.32's /metrics: labelled samples, HELP/TYPE comments, histogram series.
METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="gemma-3-270m-it"}} {running}
vllm:num_requests_waiting{{engine="0",model_name="gemma-3-270m-it"}} {waiting}
vllm:generation_tokens_total{{engine="0",model_name="gemma-3-270m-it"}} {tokens}
vllm:prompt_tokens_total{{engine="0",model_name="gemma-3-270m-it"}} 5.0
vllm:iteration_tokens_total_bucket{{engine="0",le="1.0",model_name="gemma-3-270m-it"}} 3.0
vllm:iteration_tokens_total_count{{engine="0",model_name="gemma-3-270m-it"}} 7.0
vllm:request_success_total{{engine="0",finished_reason="length",model_name="gemma-3-270m-it"}} 2.0
"""


class StandIn(http.server.BaseHTTPRequestHandler):
    """/metrics from the server's attributes; /v1/completions answers after `delay` seconds."""

    def do_GET(self):
        server = self.server
        body = METRICS.format(running=server.running, waiting=0, tokens=server.tokens).encode()  # type: ignore
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        server = self.server
        server.completions.append((json.loads(self.rfile.read(int(self.headers["Content-Length"]))),  # type: ignore
                                   self.headers.get("Authorization")))
        time.sleep(server.delay)  # type: ignore[attr-defined]
        self.send_response(server.status)  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(b'{"choices": [{"text": " there"}]}')

    def log_message(self, *args):
        pass


@pytest.fixture
def vllm():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.daemon_threads = True
    server.running, server.tokens, server.delay, server.status = 0, 100.0, 0.0, 200  # type: ignore
    server.completions = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def canary_for(vllm, tmp_path, **options) -> Canary:
    canary = Canary(f"http://127.0.0.1:{vllm.server_port}", "gemma-3-270m-it", options.get("interval", 1.0),
                    options.get("timeout", 0.5), options.get("failures", 2), StateDir(tmp_path),
                    options.get("api_key"))
    canary._last = canary.load()
    return canary


def test_parse_load_sums_gauges_and_progress_counters():
    load = parse_load(METRICS.format(running=2, waiting=1, tokens=40))
    assert load == EngineLoad(pending=3.0, progress=40 + 5 + 7)


def test_parse_load_without_vllm_metrics_is_none():
    assert parse_load("# nothing\nprocess_cpu_seconds_total 3.0\n") is None


def test_idle_server_gets_a_one_token_completion(vllm, tmp_path):
    look = canary_for(vllm, tmp_path).look()
    assert look.ok and look.reason == "the 1-token completion answered"
    assert vllm.completions[0][0]["max_tokens"] == 1


def test_busy_progressing_server_gets_no_completion(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path)
    vllm.running, vllm.tokens = 8, 500.0
    look = canary.look()
    assert look.ok and look.reason.startswith("busy, progressing")
    assert vllm.completions == []


def test_busy_without_progress_is_tested_and_fails_when_nothing_answers(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path)
    vllm.running, vllm.delay = 8, 2.0
    look = canary.look()
    assert not look.ok and "ReadTimeout" in str(look.error)


def test_canary_behind_progressing_load_is_not_a_failure(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path)
    vllm.delay = 2.0

    def load_arrives():
        time.sleep(0.2)
        vllm.running, vllm.tokens = 4, 900.0

    threading.Thread(target=load_arrives).start()
    look = canary.look()
    assert look.ok and "waited behind" in look.reason


def test_error_status_is_a_failure(vllm, tmp_path):
    vllm.status = 500
    look = canary_for(vllm, tmp_path).look()
    assert not look.ok and "HTTP 500" in look.reason


def test_records_count_consecutive_failures_and_reset_on_success(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path, failures=2)
    vllm.delay = 2.0
    for expected in (1, 2):
        canary.record(canary.look())
        assert StateDir(tmp_path).canary()["consecutive_failures"] == expected
    vllm.delay = 0.0
    canary.record(canary.look())
    record = StateDir(tmp_path).canary()
    assert record["ok"] and record["consecutive_failures"] == 0 and record["failures_limit"] == 2
    assert record["stale_after"] >= 2 * (1.0 + 0.5)


def test_api_key_is_sent_and_never_written(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path, api_key="sk-canary-secret")
    canary.record(canary.look())
    assert vllm.completions[0][1] == "Bearer sk-canary-secret"
    assert "sk-canary-secret" not in "".join(p.read_text() for p in tmp_path.iterdir())


def test_thread_records_until_stopped(vllm, tmp_path):
    settings = load_settings({"PLATFORM": "cpu", "PORT": str(vllm.server_port), "HOST": "127.0.0.1",
                              "CANARY_INTERVAL": "0.2", "CANARY_TIMEOUT": "1"})
    state = StateDir(tmp_path)
    canary = start_canary(settings, state)
    assert canary is not None and state.canary()["reason"] == "ready"
    deadline = time.monotonic() + 20
    while state.canary()["reason"] == "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    canary.stop()
    assert state.canary()["reason"] == "the 1-token completion answered"


def test_interval_zero_disables_the_canary(tmp_path):
    settings = load_settings({"PLATFORM": "cpu", "CANARY_INTERVAL": "0"})
    assert start_canary(settings, StateDir(tmp_path)) is None
    assert StateDir(tmp_path).canary() is None


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("CANARY_INTERVAL", "-1", "seconds >= 0"),
    ("CANARY_INTERVAL", "often", "seconds >= 0"),
    ("CANARY_TIMEOUT", "0", "seconds > 0"),
    ("CANARY_FAILURES", "0", "integer from 1 to 100"),
    ("CANARY_FAILURES", "2.5", "integer from 1 to 100"),
])
def test_bad_canary_settings_name_variable_value_and_allowed(name, value, allowed):
    with pytest.raises(SettingsError) as caught:
        load_settings({"PLATFORM": "cpu", name: value})
    line = next(line for line in caught.value.lines if line.startswith(f"{name}="))
    assert value in line and allowed in line


def test_the_limit_gives_a_verdict_that_a_success_takes_back(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path, failures=2)
    vllm.delay = 2.0
    canary.record(canary.look())
    assert canary.verdict is None
    canary.record(canary.look())
    assert canary.verdict == "the engine canary failed 2 times in a row (no answer to the 1-token completion)"
    vllm.delay = 0.0
    canary.record(canary.look())
    assert canary.verdict is None


class Waits:
    """A stop event that records how long each wait would have been, and stops after `looks` waits."""

    def __init__(self, looks: int) -> None:
        self.looks, self.seconds = looks, []

    def wait(self, seconds: float) -> bool:
        self.seconds.append(seconds)
        return len(self.seconds) > self.looks

    def is_set(self) -> bool:
        return False


def test_a_failed_look_is_retried_sooner_than_an_interval(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path, interval=30.0, failures=5)
    canary._stop = Waits(looks=3)  # type: ignore[assignment]
    vllm.delay = 2.0
    canary._run()
    assert canary._stop.seconds == [30.0, RETRY_SECONDS, RETRY_SECONDS, RETRY_SECONDS]  # type: ignore[attr-defined]
    assert canary.consecutive_failures == 3


def test_a_short_interval_is_not_lengthened_by_the_retry(vllm, tmp_path):
    canary = canary_for(vllm, tmp_path, interval=0.5)
    assert canary.retry == 0.5
    assert canary.stale_after == 2 * (0.5 + 0.5 + 2 * 0.5)


def test_canary_action_is_restart_by_default_and_report_on_request():
    assert load_settings({"PLATFORM": "cpu"}).canary_action == "restart"
    assert load_settings({"PLATFORM": "cpu", "CANARY_ACTION": "report"}).canary_action == "report"
    with pytest.raises(SettingsError) as caught:
        load_settings({"PLATFORM": "cpu", "CANARY_ACTION": "reboot"})
    line = next(line for line in caught.value.lines if line.startswith("CANARY_ACTION="))
    assert "reboot" in line and "restart or report" in line


class Judged:
    """What watch() reads of a canary."""

    def __init__(self, verdict: str | None) -> None:
        self.verdict = verdict


HUNG = "the engine canary failed 3 times in a row (no answer to the 1-token completion)"


def test_a_hung_verdict_kills_the_whole_group_and_leaves_the_reason(tmp_path):
    # A server with a worker under it, as vLLM's API server has its engine core.
    child = ChildProcess(["sh", "-c", "sleep 300 & echo worker $!; wait"], {"PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 30  # bounds a hang only: the shell prints at once
    while not child.tail:
        assert time.monotonic() < deadline and child.poll() is None, "the shell never printed its worker's pid"
        time.sleep(0.05)
    worker = int(child.tail[0].split()[1])
    termination = tmp_path / "termination-log"
    assert watch(child, str(termination), Judged(HUNG)) == 1  # type: ignore[arg-type]
    assert child.poll() is not None and gone(worker)
    assert termination.read_text() == f"{HUNG}; vLLM was killed so that the restart policy starts it again\n"


def gone(pid: int) -> bool:
    """No such process, or only its zombie (its parent, killed too, never reaped it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_no_verdict_watches_until_the_server_exits(tmp_path):
    child = ChildProcess(["sh", "-c", "exit 3"], {"PATH": "/usr/bin:/bin"})
    assert watch(child, str(tmp_path / "termination-log"), Judged(None)) == 3  # type: ignore[arg-type]
