"""Scale-out on this machine: two `serve` replicas behind vLLM's router against one replica direct.

Starts the routed Compose project the container tests start too (testbed/routed.py: two eager
CPU replicas, the router, the API key), then:

- `vllm bench serve` at c=1 and c=8 against replica 1 direct (its container address), the
  router with replica 1 only (the router's own cost) and the router with both replicas;
- the router's own latency on a request vLLM answers at once (GET /v1/models), direct and routed;
- load spread: each replica's `vllm:request_success_total` over the routed c=8 run;
- one replica SIGKILLed under c=8 load: failed requests, and the time until the router's
  health checks mark it down (`vllm_router_worker_health` on the router's metrics port);
- `scripts/rollout.py` (what `make rollout` runs) under c=8 load: failed requests;
- one replica's engine core SIGSTOPped under load: the time until the router stops routing
  to it, bounded by --hang-seconds (vLLM's /health answers 200 throughout unless the
  supervisor takes a hung vLLM down).

Writes bench/results/scale.{json,md}. Usage:
    python bench/scale.py [--prompts-c1 16] [--prompts-c8 64] [--hang-seconds 150]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_facts, write_report  # noqa: E402
from bench.scale_report import markdown  # noqa: E402
from testbed.fixture import SERVED_NAME, fixture_weights  # noqa: E402
from testbed.routed import API_KEY, SUCCESS, UP_TIMEOUT, Routed, complete  # noqa: E402
from verification.perf import BenchLoad, _read_json, bench_env, parse_serve, run_bench, serve_command  # noqa: E402

INPUT_LEN, OUTPUT_LEN = 128, 32
PROBES = 200  # GET /v1/models per target for the router's own latency
POLL_SECONDS = 0.5



def successes(container: str) -> float:
    """vLLM's request_success_total in one replica container, by name (a rollout's replacement keeps
    the name, not Compose's index)."""
    done = subprocess.run(["docker", "exec", container, "python3", "-c",
                           "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8000/metrics').read().decode())"],
                          capture_output=True, text=True, timeout=60, check=True)
    return sum(float(value) for value in SUCCESS.findall(done.stdout))

class Stack:
    """The routed project, its replicas' container addresses and the router's admin API."""

    def __init__(self, routed: Routed) -> None:
        self.routed = routed
        self.names = [f"{routed.project}-serve-{i}" for i in (1, 2)]
        self.router = f"{routed.project}-router-1"

    def address(self, name: str) -> str:
        ip = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                             name], capture_output=True, text=True, check=True).stdout.strip()
        return f"http://{ip}:8000"

    def admin(self, path: str, method: str = "POST") -> str:
        code = ("import sys, urllib.request as u\n"
                "print(u.urlopen(u.Request('http://127.0.0.1:8000' + sys.argv[1], method=sys.argv[2]),"
                " timeout=900).read().decode())")
        return subprocess.run(["docker", "exec", self.router, "python3", "-c", code, path, method],
                              capture_output=True, text=True, check=True, timeout=960).stdout

    def routable(self) -> set[str]:
        """The replicas the router would send to: listed, and not marked unhealthy by its checks."""
        metrics = subprocess.run(["docker", "exec", self.router, "python3", "-c",
                                  "import urllib.request as u; print(u.urlopen('http://127.0.0.1:29000/metrics',"
                                  " timeout=5).read().decode())"], capture_output=True, text=True).stdout
        down = set(re.findall(r'worker="http://([^":]+):8000"[^}]*\} 0(?:\.0)?$', healthy_lines(metrics), re.M))
        listed = set(re.findall(r"http://([^\":]+):8000", self.admin("/list_workers", "GET")))
        return listed - down

    def successes(self) -> list[float]:
        return [successes(name) for name in self.names]


def healthy_lines(metrics: str) -> str:
    return "\n".join(line for line in metrics.splitlines() if "health" in line and not line.startswith("#"))


def bench_serve(url: str, concurrency: int, prompts: int, folder: Path, tag: str) -> dict[str, Any]:
    out = folder / f"{tag}.json"
    load = BenchLoad(num_prompts=prompts, input_len=INPUT_LEN, output_len=OUTPUT_LEN, concurrency=concurrency)
    command = serve_command(load, url, SERVED_NAME, fixture_weights(), out, seed=0, warmups=min(prompts, 2))
    run_bench(command, bench_env(dict(os.environ), API_KEY), folder / f"{tag}.log")
    summary = parse_serve(_read_json(out))
    summary.pop("requests")
    return summary


def probe_ms(url: str) -> float:
    """p50 of GET /v1/models: what a hop costs on a request vLLM answers at once."""
    request = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
    times = []
    for _ in range(PROBES):
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def overhead(stack: Stack, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """c=1 and c=8 against replica 1 direct, the router with replica 1 only, the router with both."""
    direct, routed_url = stack.address(stack.names[0]), stack.routed.url
    second = f"http://{stack.names[1]}:8000"
    runs: dict[str, Any] = {"probe_p50_ms": {"direct": probe_ms(direct), "router": probe_ms(routed_url)}}
    for c, prompts in ((1, args.prompts_c1), (8, args.prompts_c8)):
        runs[f"direct c={c}"] = bench_serve(direct, c, prompts, folder, f"direct-c{c}")
        stack.admin(f"/remove_worker?url={second}")
        try:
            runs[f"router, 1 replica c={c}"] = bench_serve(routed_url, c, prompts, folder, f"router1-c{c}")
        finally:
            stack.admin(f"/add_worker?url={second}")
        before = stack.successes()
        runs[f"router, 2 replicas c={c}"] = bench_serve(routed_url, c, prompts, folder, f"router2-c{c}")
        runs[f"spread c={c}"] = [after - was for after, was in zip(stack.successes(), before, strict=True)]
    return runs


class Traffic:
    """`clients` sending completions through the router back to back; each request's end time and status."""

    def __init__(self, url: str, clients: int) -> None:
        self.url, self.results = url, []
        self.running = threading.Event()
        self.running.set()
        self.pool = ThreadPoolExecutor(clients)
        self.futures = [self.pool.submit(self.client, n) for n in range(clients)]

    def send(self, prompt: str) -> int:
        try:
            return complete(self.url, prompt)
        except (urllib.error.URLError, OSError):
            return 0  # no HTTP answer at all (refused, reset, or none within complete()'s 300 s)

    def client(self, worker: int) -> None:
        n = 0
        while self.running.is_set():
            began = time.monotonic()
            status = self.send(f"scale client {worker} request {n} " + "words " * 40)
            self.results.append((time.monotonic(), status, time.monotonic() - began))
            n += 1

    def stop(self) -> list[tuple[float, int, float]]:
        self.running.clear()
        for future in self.futures:
            future.result()
        self.pool.shutdown()
        return self.results


def failures(results: list[tuple[float, int, float]], since: float) -> dict[str, Any]:
    """Requests that ended after `since`: how many, how many failed (and with what), the slowest."""
    after = [(at - since, status, took) for at, status, took in results if at >= since]
    failed = [(at, status) for at, status, _ in after if status != 200]
    return {"requests": len(after), "failed": len(failed),
            "failed_statuses": sorted({status for _, status in failed}),
            "last_failure_s": round(max(at for at, _ in failed), 1) if failed else None,
            "slowest_s": round(max((took for _, _, took in after), default=0), 1)}


def wait_out_of_rotation(stack: Stack, name: str, since: float, bound: float) -> float | None:
    """Seconds from `since` until the router no longer routes to `name`, or None within `bound`."""
    while time.monotonic() - since < bound:
        if name not in stack.routable():
            return round(time.monotonic() - since, 1)
        time.sleep(POLL_SECONDS)
    return None


def wait_back(stack: Stack, name: str, bound: float = 900) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < bound:
        if name in stack.routable() and stack.routed.compose("ps", "--format", "{{.Name}} {{.Health}}",
                                                             "serve").stdout.count(" healthy") == 2:
            return round(time.monotonic() - start, 1)
        time.sleep(2)
    return None


def killed(stack: Stack) -> dict[str, Any]:
    """Replica 2's container init SIGKILLed under c=8 (Docker's restart policy brings it back)."""
    name = stack.names[1]
    traffic = Traffic(stack.routed.url, 8)
    time.sleep(10)
    since = time.monotonic()
    init = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True,
                          check=True).stdout.strip()
    os.kill(int(init), signal.SIGKILL)  # a crash, not `docker kill`: the restart policy applies
    out = wait_out_of_rotation(stack, name, since, 120)
    time.sleep(10)
    result = {"out_of_rotation_s": out, **failures(traffic.stop(), since)}
    result["back_in_rotation_s"] = wait_back(stack, name)
    return result


def rollout(stack: Stack) -> dict[str, Any]:
    traffic = Traffic(stack.routed.url, 8)
    time.sleep(5)
    since = time.monotonic()
    done = subprocess.run([sys.executable, "scripts/rollout.py", "--", *stack.routed.args[2:]], cwd=ROOT,
                          env=stack.routed.env, capture_output=True, text=True, timeout=UP_TIMEOUT)
    seconds = round(time.monotonic() - since, 1)
    result = {"exit": done.returncode, "seconds": seconds, **failures(traffic.stop(), since)}
    result["log"] = done.stdout.splitlines() + done.stderr.splitlines()
    return result


def engine_core_pid(name: str) -> int:
    """The host pid of vLLM's engine core in the container (its process title says so)."""
    top = subprocess.run(["docker", "top", name, "-eo", "pid,args"], capture_output=True, text=True, check=True)
    for line in top.stdout.splitlines()[1:]:
        pid, _, command = line.strip().partition(" ")
        if "EngineCore" in command:
            return int(pid)
    raise SystemExit(f"no EngineCore process in {name}")


def hung(stack: Stack, bound: float) -> dict[str, Any]:
    """Replica 1's engine core SIGSTOPped under c=2; SIGCONTed after it left rotation or `bound` passed."""
    name = stack.names[0]
    core = engine_core_pid(name)
    traffic = Traffic(stack.routed.url, 2)
    time.sleep(5)
    since = time.monotonic()
    os.kill(core, signal.SIGSTOP)
    try:
        out = wait_out_of_rotation(stack, name, since, bound)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the supervisor took vLLM down
            os.kill(core, signal.SIGCONT)
    result = {"bound_s": bound, "out_of_rotation_s": out, **failures(traffic.stop(), since)}
    result["back_in_rotation_s"] = wait_back(stack, name)
    return result


def up(folder: Path) -> Routed:
    routed = Routed(folder)
    subprocess.run(["scripts/cpu-wheels.sh", ".build/wheels"], cwd=ROOT, check=True, capture_output=True, timeout=1800)
    started = routed.compose("up", "--detach", "--build", "--wait", "serve", "router", timeout=UP_TIMEOUT)
    if started.returncode != 0:
        routed.compose("down", "--volumes")
        raise SystemExit(f"compose up failed: {started.stderr.strip().splitlines()[-1:]}")
    return routed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts-c1", type=int, default=16)
    parser.add_argument("--prompts-c8", type=int, default=64)
    parser.add_argument("--hang-seconds", type=float, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp)
        routed = up(folder)
        try:
            stack = Stack(routed)
            for name in stack.names:  # compile warm-up, outside the measured runs
                complete(stack.address(name), "warm up")
            result: dict[str, Any] = {"machine": cpu_facts(), "load_average": os.getloadavg(),
                                      "input_len": INPUT_LEN, "output_len": OUTPUT_LEN,
                                      "policy": routed.env.get("ROUTER_POLICY", "cache_aware")}
            result["overhead"] = overhead(stack, args, folder)
            result["load_average_end"] = os.getloadavg()
            write_report("scale", result, markdown(result))
            # The report is rewritten after each scenario, so a run cut short keeps what it measured.
            # The rollout last: on 2 cores it takes the longest (each new replica starts beside one at full load).
            for key, scenario in (("hung", lambda: hung(stack, args.hang_seconds)), ("killed", lambda: killed(stack)),
                                  ("rollout", lambda: rollout(stack))):
                print(f"scale: {key}", file=sys.stderr)
                result[key] = scenario()
                result["load_average_end"] = os.getloadavg()
                write_report("scale", result, markdown(result))
        finally:
            routed.compose("down", "--volumes")


if __name__ == "__main__":
    main()
