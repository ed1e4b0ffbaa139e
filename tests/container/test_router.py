"""Two eager `serve` replicas behind vLLM's router (compose/router.yaml) on a real Docker engine.

One Compose project of its own: the CPU and test-bed overrides as `make up TESTBED=1` uses
them, the router override, the API-key override, and a file of the fixture's fast settings.
`make monitor` adds the monitoring profile's Prometheus to it, scraping every replica and the
router; its rules and dashboard are checked against a short load, and a replica whose engine
core is stopped fires the hung-engine alert, leaves the router's rotation and comes back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from entrypoint.api_guard import OPEN_ROUTES
from observability.dashboard import dashboard, queries, substituted
from testbed.prometheus import RULES, WAIT_SECONDS, firing, query, query_range, wait_for
from testbed.routed import API_KEY, REPLICAS, UP_TIMEOUT, Routed, answered, complete
from tests.container.conftest import ROOT, make
from tests.container.test_compose_config import config

pytestmark = pytest.mark.container
REQUESTS = 32


@pytest.fixture(scope="module")
def routed(tmp_path_factory) -> Iterator[Routed]:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run these tests with `make test-container`")
    deployed = Routed(tmp_path_factory.mktemp("router"))
    # What `make up` does first on the CPU: the torch wheel the image build takes from the context.
    subprocess.run(["scripts/cpu-wheels.sh", ".build/wheels"], cwd=ROOT, check=True, capture_output=True, timeout=1800)
    up = deployed.compose("up", "--detach", "--build", "--wait", "serve", "router", timeout=UP_TIMEOUT)
    if up.returncode != 0:
        logs = deployed.compose("logs", "--tail", "40").stdout
        deployed.compose("--profile", "monitoring", "down", "--volumes")
        pytest.fail(f"compose up failed ({up.returncode}):\n{up.stderr[-3000:]}\n{logs[-6000:]}")
    yield deployed
    deployed.compose("--profile", "monitoring", "down", "--volumes")


def test_router_config_replaces_the_published_port_and_lists_every_replica():
    services = config("cpu", "compose/router.yaml", REPLICAS="3", COMPOSE_PROJECT_NAME="demo")["services"]
    assert services["serve"]["deploy"]["replicas"] == 3 and not services["serve"].get("ports")
    router = services["router"]
    assert router["environment"]["REPLICAS"] == "3" and router["environment"]["ROUTER_PROJECT"] == "demo"
    assert router["environment"]["ROUTER_POLICY"] == "cache_aware"
    assert [p["target"] for p in router["ports"]] == [8000]
    assert router["depends_on"]["serve"]["condition"] == "service_healthy"
    assert services["smoke"]["command"] == ["smoke", "--url", "http://router:8000"]
    assert list(services["smoke"]["depends_on"]) == ["router"]


def test_requests_through_the_router_reach_every_replica(routed):
    before = [routed.successes(i) for i in range(1, REPLICAS + 1)]
    # Prompts that share no prefix, so cache-aware routing falls back to balancing the load.
    prompts = [f"{n * 7919} {chr(97 + n % 26) * 8} tell me about number {n}" for n in range(REQUESTS)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda prompt: complete(routed.url, prompt), prompts))
    assert statuses == [200] * REQUESTS
    served = [routed.successes(i) - before[i - 1] for i in range(1, REPLICAS + 1)]
    assert sum(served) >= REQUESTS and all(count > 0 for count in served), served


def test_compose_smoke_goes_through_the_router_with_the_key(routed):
    done = routed.compose("--profile", "tools", "run", "--rm", "smoke", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "smoke OK" in done.stdout + done.stderr


def test_the_clients_key_passes_through_to_the_replicas(routed):
    # The router checks no key itself: it forwards the client's Authorization header, and vLLM decides.
    assert complete(routed.url, "an unkeyed request", key=None) == 401
    assert complete(routed.url, "a wrongly keyed request", key="sk-wrong") == 401
    direct = routed.compose("exec", "--index", "1", "serve", "python", "-c",
                            "import urllib.request as u, urllib.error as e\n"
                            "try: u.urlopen('http://127.0.0.1:8000/v1/models')\n"
                            "except e.HTTPError as x: print(x.code)")
    assert direct.stdout.strip() == "401"


# Inside a replica: every route of its running vLLM's own OpenAPI table, asked without the key (and
# the read-only GETs with it), as (path, method, without_key, with_key) rows of JSON.
ROUTE_TABLE = """import json, urllib.request, urllib.error
KEY, OPEN = {key!r}, {open!r}
def ask(path, method, key):
    headers = {{"Content-Type": "application/json", **({{"Authorization": "Bearer " + key}} if key else {{}})}}
    data = b"{{}}" if method != "GET" else None
    try:
        with urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8000" + path, data=data,
                                    headers=headers, method=method), timeout=60) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
table = json.load(urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:8000/openapi.json",
                  headers={{"Authorization": "Bearer " + KEY}}), timeout=60))
rows = []
for path, operations in table["paths"].items():
    while "{{" in path:
        path = path[:path.index("{{")] + "x" + path[path.index("}}") + 1:]
    for method in (m.upper() for m in operations if m != "head"):
        with_key = ask(path, method, KEY) if method == "GET" or path in OPEN else None
        rows.append((path, method, ask(path, method, None), with_key))
print(json.dumps(rows))
"""


def test_every_route_of_a_running_replica_needs_the_key_but_the_open_list(routed):
    # The image's vLLM (the container layer's) as it runs, with the guard the render loads.
    done = routed.python(1, ROUTE_TABLE.format(key=API_KEY, open=sorted(OPEN_ROUTES)))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert {"/v1/chat/completions", "/invocations", "/tokenize"} <= {path for path, *_ in rows}
    assert {path: without for path, _, without, _ in rows if path in OPEN_ROUTES} == dict.fromkeys(OPEN_ROUTES, 200)
    assert [row for row in rows if row[0] not in OPEN_ROUTES and row[2] != 401] == []
    assert [row for row in rows if row[3] == 401] == []


@pytest.fixture(scope="module")
def router_image(tmp_path_factory) -> str:
    """The router's image, built here (its few layers come from the build cache once `routed`
    has built it), so this test does not rely on that fixture having run first."""
    built = Routed(tmp_path_factory.mktemp("router-image")).compose("build", "router", timeout=1800)
    if built.returncode != 0:
        pytest.fail(f"building the router image failed ({built.returncode}):\n{built.stderr[-3000:]}")
    return "ascend-serve-router:local"


def test_bad_policy_is_one_line_from_the_router(router_image):
    done = subprocess.run(["docker", "run", "--rm", "-e", "ROUTER_PROJECT=p", "-e", "ROUTER_POLICY=fastest",
                           router_image], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "router: ROUTER_POLICY=fastest is not allowed: one of random, round_robin, cache_aware, power_of_two"]


# --- monitoring: `make monitor` on this project, then the same Prometheus scraping every second ---

# Inside a replica: SIGSTOP the engine core (vLLM titles it VLLM::EngineCore); /health stays 200.
STOP_ENGINE_CORE = """import os, signal
def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""
cores = [int(p) for p in os.listdir("/proc")
         if p.isdigit() and int(p) != os.getpid() and b"EngineCore" in cmdline(p)]
assert len(cores) == 1, cores
os.kill(cores[0], signal.SIGSTOP)
"""
RESUME_ALL = """import os, signal
for p in filter(str.isdigit, os.listdir("/proc")):
    try:
        os.kill(int(p), signal.SIGCONT)
    except OSError:
        pass
"""
HUNG_REASON = "the engine canary failed 3 times in a row"
RESTART_SECONDS = 900  # bounds a hang only: a canary verdict, then a warm eager start


@dataclass
class Monitored:
    """Prometheus of the `monitoring` profile on the routed project, and what `make monitor` printed."""

    url: str
    made: subprocess.CompletedProcess


def fast_scrapes(folder: Path) -> Path:
    """A Compose override giving Prometheus the image's routed config at a 1 s scrape and evaluation."""
    config = yaml.safe_load((ROOT / "observability" / "prometheus" / "routed.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        for discovery in job.get("dns_sd_configs", []):
            discovery["refresh_interval"] = "1s"
    path = folder / "routed.yml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)  # Prometheus's own user reads it
    override = folder / "prometheus-fast.yaml"
    override.write_text(yaml.safe_dump({"services": {"prometheus": {"volumes": [
        f"{path}:/etc/prometheus/routed.yml:ro"]}}}))
    return override


@pytest.fixture(scope="module")
def monitored(routed, tmp_path_factory) -> Iterator[Monitored]:
    made = make("monitor", *routed.make_vars, timeout=UP_TIMEOUT)
    if made.returncode != 0:
        pytest.fail(f"make monitor failed ({made.returncode}):\n{made.stdout[-3000:]}\n{made.stderr[-3000:]}")
    url = f"http://127.0.0.1:{routed.prometheus_port}"
    monitored = Monitored(url, made)
    try:
        wait_for(lambda: ready(url) and jobs(url) == ["ascend-serve"] * REPLICAS + ["router"] + ["vllm"] * REPLICAS,
                 "every replica and the router among make monitor's targets")
        # The same service, recreated with a 1 s scrape so the checks below take seconds.
        fast = routed.compose("-f", str(fast_scrapes(tmp_path_factory.mktemp("prometheus"))), "--profile",
                              "monitoring", "up", "--detach", "--no-deps", "prometheus")
        assert fast.returncode == 0, fast.stderr
        wait_for(lambda: ready(url) and len(query(url, "up == 1")) == 2 * REPLICAS + 1, "scrape of every target")
        yield monitored
    finally:
        routed.compose("--profile", "monitoring", "rm", "--stop", "--force", "prometheus")


def ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def jobs(url: str) -> list[str]:
    """The job of every target Prometheus discovered, sorted."""
    targets = requests.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    return sorted(target["labels"]["job"] for target in targets)


def load(url: str) -> None:
    """Completions through the router: half sharing a long prefix (prefix-cache hits), half not."""
    prompts = [("The capital of France is Paris. " * 8 if n % 2 else f"{n * 7919} ") + f"number {n}" for n in range(16)]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda prompt: complete(url, prompt), prompts)) == [200] * len(prompts)


def test_make_monitor_prints_the_url_of_its_prometheus(routed, monitored):
    assert f"Prometheus: http://127.0.0.1:{routed.prometheus_port}" in monitored.made.stdout, monitored.made.stdout


def test_every_recording_rule_and_dashboard_query_returns_data_under_load(routed, monitored):
    load(routed.url)
    time.sleep(5)  # a few more scrapes after the load, for every rate() window
    load(routed.url)
    records = sorted({rule["record"] for group in yaml.safe_load((RULES / "recording.yaml").read_text())["groups"]
                      for rule in group["rules"]})
    wait_for(lambda: all(query(monitored.url, record) for record in records), "data for every recording rule")
    empty = [(title, expr) for title, expr in queries(dashboard()) if not query(monitored.url, substituted(expr))]
    assert empty == [], empty
    assert not firing(monitored.url, "AscendServeEngineHung")


def in_rotation(url: str, worker: str) -> list[float]:
    """vllm_router_worker_health of one replica as Prometheus last scraped it (empty before a scrape)."""
    return [float(r["value"][1]) for r in query(url, f'vllm_router_worker_health{{worker="{worker}"}}')]


def restarted_healthy(replica: dict, restarts: int) -> bool:
    return replica["RestartCount"] > restarts and replica["State"].get("Health", {}).get("Status") == "healthy"


@pytest.mark.timeout(RESTART_SECONDS + 4 * WAIT_SECONDS)  # a restart and the waits for the alert and rotation
def test_a_hung_replica_fires_the_alert_leaves_the_rotation_and_comes_back(routed, monitored):
    url, worker = monitored.url, f"http://{routed.project}-serve-1:8000"
    assert in_rotation(url, worker) == [1.0]
    restarts = routed.replica(1)["RestartCount"]
    stopped_at = time.time()
    done = routed.python(1, STOP_ENGINE_CORE)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        wait_for(lambda: in_rotation(url, worker) == [0.0], "replica 1 out of the router's rotation")
        # The first scrape that saw it out, to the scrape interval (1 s). The range ends one step past now:
        # its last evaluation point must not fall before the scrape the instant query just saw.
        health = query_range(url, f'vllm_router_worker_health{{worker="{worker}"}}', stopped_at, time.time() + 1, 1)
        ejected_at = min(t for t, value in health[0]["values"] if float(value) == 0)
        print(f"\nhung replica out of the router's rotation {ejected_at - stopped_at:.0f} s after its engine core "
              "was stopped")
        wait_for(lambda: firing(url, "AscendServeEngineHung"), "AscendServeEngineHung firing")
        logs = routed.compose("logs", "--no-log-prefix", "serve")
        assert HUNG_REASON in logs.stdout + logs.stderr, logs.stdout[-3000:]
    finally:
        if routed.replica(1)["RestartCount"] == restarts:  # the supervisor did not act: leave nothing stopped
            routed.python(1, RESUME_ALL)
    # Docker restarted the exited container; its start is warm, and the router takes it back.
    deadline = time.monotonic() + RESTART_SECONDS
    while not restarted_healthy(replica := routed.replica(1), restarts):
        assert time.monotonic() < deadline, replica["State"]
        time.sleep(2)
    assert replica["RestartCount"] == restarts + 1
    wait_for(lambda: in_rotation(url, worker) == [1.0], "replica 1 back in the router's rotation")
    before = routed.successes(1)
    load(routed.url)
    assert routed.successes(1) > before


def test_rollout_refuses_one_replica_in_one_line(routed):
    # The routed project's files without the router override: what `make rollout` sees with REPLICAS=1.
    files = [arg for file in routed.args[5::2] if not file.endswith(("/router.yaml", "/router-api-key.yaml"))
             for arg in ("-f", file)]
    done = subprocess.run([sys.executable, "scripts/rollout.py", "--", "-p", routed.project, *files],
                          cwd=ROOT, env=routed.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rollout: REPLICAS=1 is not allowed: make rollout replaces replicas behind the router, so it needs "
        "REPLICAS=2 or more (make up REPLICAS=2); one server is replaced with make down && make up"]


def test_rollout_of_a_project_that_runs_nothing_is_one_line():
    done = subprocess.run([sys.executable, "scripts/rollout.py", "--", "-p", "ascend-serve-no-router-test",
                           "-f", str(ROOT / "compose" / "compose.yaml"), "-f", str(ROOT / "compose" / "cpu.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rollout: no `serve` replica runs in this Compose project: start it first (make up REPLICAS=2), "
        "with the same PROJECT, PLATFORM and REPLICAS as make rollout"]


def failing_streak(container: str) -> int:
    done = subprocess.run(["docker", "inspect", "-f", "{{.State.Health.FailingStreak}}", container],
                          capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout)


def test_the_routers_admission_sheds_a_burst_with_429_and_retry_after_and_the_probes_stay_green(routed):
    # vllm-router's own bounds (ROUTER_MAX_CONCURRENT, ROUTER_QUEUE_SIZE) on the running project: one in
    # flight and no queue, so a burst of eight is mostly shed at the router, before any replica.
    bounded = {**routed.env, "ROUTER_MAX_CONCURRENT": "1", "ROUTER_QUEUE_SIZE": "0"}
    recreate = [*routed.args, "up", "--detach", "--no-deps", "--wait", "router"]
    try:
        up = subprocess.run(recreate, cwd=ROOT, env=bounded, capture_output=True, text=True, timeout=UP_TIMEOUT)
        assert up.returncode == 0, up.stderr[-3000:]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: answered(routed.url, f"burst request {n}", max_tokens=16), range(8)))
        statuses = sorted(status for status, _ in answers)
        assert set(statuses) == {200, 429}, statuses
        assert all(retry_after and retry_after.isdigit() for status, retry_after in answers if status == 429), answers
        containers = [f"{routed.project}-router-1", *(f"{routed.project}-serve-{i}" for i in range(1, REPLICAS + 1))]
        assert [failing_streak(name) for name in containers] == [0] * len(containers)
        assert complete(routed.url, "after the burst") == 200
    finally:
        subprocess.run(recreate, cwd=ROOT, env=routed.env, capture_output=True, text=True, timeout=UP_TIMEOUT)
