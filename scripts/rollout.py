"""Replace the `serve` replicas behind vLLM's router one at a time, dropping no request.

    python3 scripts/rollout.py [--drain SECONDS] [--ready-timeout SECONDS] [-- COMPOSE_ARG ...]

`make rollout` runs it after building the image; without COMPOSE_ARGs it addresses the
deployment of the checkout root's compose.yaml (written by make). For each replica, in
name order:

1. the router forgets it (vllm-router's POST /remove_worker?url=), so no new request goes there;
2. it drains: its own vLLM reports no running or waiting request, or --drain seconds pass;
3. `docker stop` ends it within the service's stop_grace_period (the supervisor gives vLLM
   STOP_GRACE_PERIOD, vLLM finishes what it accepted within --shutdown-timeout);
4. Compose starts a replacement on the current image and settings, which takes the old
   name (the router addresses replicas as <project>-serve-<n>, compose/router/start.sh);
5. Docker's healthcheck (the bundle's `ready`) turns healthy;
6. the router takes it back (POST /add_worker?url=, which waits for its /health).

One replica (no router) is refused: a lone server cannot be replaced without a gap. Bad
input: exit 2 and one line; a step that fails: exit 1 and one line naming the replica.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 2
# vllm-router's admin API inside its container, so neither the published port nor a key is needed.
ADMIN = ("import sys, urllib.request as u\n"
         "r = u.urlopen(u.Request('http://127.0.0.1:8000' + sys.argv[1], method=sys.argv[2]), timeout=900)\n"
         "print(r.read().decode())")
# vLLM's in-flight gauges on a replica, read from inside it (its port is not published).
IN_FLIGHT = ("import re, urllib.request as u\n"
             "text = u.urlopen('http://127.0.0.1:8000/metrics', timeout=5).read().decode()\n"
             "print(sum(float(v) for v in re.findall("
             "r'^vllm:num_requests_(?:running|waiting)\\{.*\\} ([0-9.e+]+)$', text, re.M)))")


class RolloutError(Exception):
    """A step failed: one line for the operator."""


class BadInput(Exception):
    """A setting or option that rollout cannot work with: one line, exit 2."""


def run(argv: list[str], timeout: float = 900) -> str:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RolloutError(f"`{' '.join(argv[:4])} ...` failed: {last}")
    return done.stdout


class Deployment:
    """The Compose project's `serve` replicas and its router, through `docker compose` and `docker`."""

    def __init__(self, compose_args: list[str]) -> None:
        self.compose = ["docker", "compose", *compose_args]

    def containers(self, service: str) -> list[str]:
        """Names of the service's containers, running or not, in name order."""
        out = run([*self.compose, "ps", "--all", "--format", "{{.Name}}", service])
        return sorted(out.split(), key=lambda name: (len(name), name))

    def router(self) -> str:
        try:
            routers = self.containers("router")
        except RolloutError:
            routers = []  # no router service in this deployment's files
        if not routers:
            raise BadInput("REPLICAS=1 is not allowed: make rollout replaces replicas behind the router, "
                           "so it needs REPLICAS=2 or more (make up REPLICAS=2); one server is replaced "
                           "with make down && make up")
        return routers[0]

    def admin(self, router: str, path: str, method: str = "POST") -> str:
        return run(["docker", "exec", router, "python3", "-c", ADMIN, path, method]).strip()

    def in_flight(self, name: str) -> float:
        return float(run(["docker", "exec", name, "python3", "-c", IN_FLIGHT], timeout=30))

    def health(self, name: str) -> tuple[str, str]:
        state = json.loads(run(["docker", "inspect", "--format", "{{json .State}}", name]))
        return state["Status"], (state.get("Health") or {}).get("Status", "none")

    def start_replacement(self, replicas: int, old: set[str]) -> str:
        """Compose creates the missing replica (a new number); the one it made is returned."""
        run([*self.compose, "up", "--detach", "--no-deps", "--no-recreate", "--scale", f"serve={replicas}", "serve"])
        new = set(self.containers("serve")) - old
        if len(new) != 1:
            raise RolloutError(f"Compose started {sorted(new) or 'no container'} instead of one replacement")
        return new.pop()


def log(message: str) -> None:
    print(f"rollout: {message}", flush=True)


def drain(deployment: Deployment, name: str, seconds: float) -> float:
    """Seconds until the replica had nothing running or waiting (or the drain time ran out)."""
    start = time.monotonic()
    time.sleep(1)  # a request the router picked this replica for just before removal reaches it
    while time.monotonic() - start < seconds:
        try:
            if deployment.in_flight(name) == 0:
                break
        except (RolloutError, ValueError):
            break  # no answer from its /metrics: nothing left to drain there
        time.sleep(POLL_SECONDS / 4)
    return time.monotonic() - start


def wait_ready(deployment: Deployment, name: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        status, health = deployment.health(name)
        if health == "healthy":
            return time.monotonic() - start
        if status in {"exited", "dead"} or health == "unhealthy":
            tail = subprocess.run(["docker", "logs", "--tail", "1", name], capture_output=True, text=True)
            last = (tail.stderr.strip() or tail.stdout.strip() or "no log").splitlines()[-1]
            raise RolloutError(f"{name} did not become ready ({status}, {health}): {last}")
        time.sleep(POLL_SECONDS)
    raise RolloutError(f"{name} was not ready within --ready-timeout={timeout:g} s (see docker logs {name})")


def replace(deployment: Deployment, router: str, name: str, replicas: int, args: argparse.Namespace) -> None:
    url = f"http://{name}:8000"
    deployment.admin(router, f"/remove_worker?url={url}")
    log(f"{name}: out of the router")
    log(f"{name}: drained in {drain(deployment, name, args.drain):.1f} s")
    others = set(deployment.containers("serve")) - {name}
    run(["docker", "stop", name])
    run(["docker", "rm", name])
    log(f"{name}: stopped and removed")
    new = deployment.start_replacement(replicas, others)
    run(["docker", "rename", new, name])
    log(f"{name}: replacement started on the current image and settings")
    log(f"{name}: ready after {wait_ready(deployment, name, args.ready_timeout):.0f} s")
    deployment.admin(router, f"/add_worker?url={url}")
    if url not in deployment.admin(router, "/list_workers", "GET"):
        raise RolloutError(f"the router did not take {name} back: add it with POST /add_worker?url={url}")
    log(f"{name}: back in the router")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(message)  # one line, not argparse's usage and error


def parse(argv: list[str]) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drain", type=float, default=30,
                        help="seconds to wait for a replica's in-flight requests before stopping it (default 30)")
    parser.add_argument("--ready-timeout", type=float, default=1800,
                        help="seconds a replacement may take to turn healthy (default 1800, the start_period)")
    parser.add_argument("compose_args", nargs="*", help="arguments for `docker compose` (-p PROJECT -f FILE ...)")
    args = parser.parse_args(argv)
    for option, most in (("drain", 3600), ("ready_timeout", 86400)):
        if not 0 < getattr(args, option) <= most:  # nan and inf fail here too
            raise BadInput(f"--{option.replace('_', '-')}={getattr(args, option):g} is not allowed: "
                           f"a number of seconds > 0 and <= {most}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        deployment = Deployment(args.compose_args)
        names = deployment.containers("serve")
        if not names:
            raise BadInput("no `serve` replica runs in this Compose project: start it first (make up REPLICAS=2), "
                           "with the same PROJECT, PLATFORM and REPLICAS as make rollout")
        router = deployment.router()
        if len(names) < 2:
            raise BadInput(f"REPLICAS={len(names)} is not allowed: make rollout needs 2 or more "
                           "`serve` replicas behind the router (make up REPLICAS=2)")
        log(f"{len(names)} replicas behind {router}, one at a time")
        for name in names:
            replace(deployment, router, name, len(names), args)
    except BadInput as error:
        print(f"rollout: {error}", file=sys.stderr)
        return 2
    except (RolloutError, subprocess.TimeoutExpired) as error:
        print(f"rollout: {error}", file=sys.stderr)
        return 1
    log(f"done: {len(names)} replicas replaced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
