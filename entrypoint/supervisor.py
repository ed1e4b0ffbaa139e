"""`entrypoint serve`: weights -> vLLM as a child -> ready -> smoke -> ready marker -> watch.

Signals: SIGTERM/SIGINT at any point stop the start; once vLLM runs they are
forwarded to it, it gets STOP_GRACE_PERIOD seconds, then its whole process group is
killed, and the supervisor exits with vLLM's status. If vLLM dies on its own, the
supervisor exits non-zero at once, quoting vLLM's last lines. While vLLM runs ready,
the canary (entrypoint/canary.py) checks that its engine still generates; when it calls
the engine hung (and CANARY_ACTION is restart), the supervisor kills vLLM's process group
and exits non-zero with the reason, so the restart policy starts it again and a router,
whose /health polls a hung vLLM would still pass, finds the port closed.

A LeaderWorkerSet worker (`Settings.node_role`) runs vLLM headless: no API, so no smoke
check and no canary; it marks itself ready once its leader serves, which vLLM's leader
does only after every node of the group joined (the roles' contract: entrypoint/state.py).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from pydantic import SecretStr

from entrypoint import metrics, scrub
from entrypoint.api_guard import GUARD_ENV, TOKEN_ENV
from entrypoint.canary import Canary, start_canary
from entrypoint.child import ChildProcess, exit_status
from entrypoint.errors import UserError
from entrypoint.http import bearer
from entrypoint.readiness import ServerExited, wait_until_ready
from entrypoint.render import render_command
from entrypoint.settings import Settings, inherited_environment
from entrypoint.shipped_cache import seed
from entrypoint.smoke import run_smoke, smoke_expectation
from entrypoint.startup_errors import classify, write_termination_message
from entrypoint.state import StateDir
from entrypoint.weights import Weights, ensure_weights

log = logging.getLogger("entrypoint.supervisor")
WATCH_SECONDS = 1.0


class StopRequested(Exception):
    """SIGTERM or SIGINT arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    # Later signals are ignored: the first one already started an orderly stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise StopRequested(signum)


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGINT into StopRequested in the main thread."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_stop)


def start_server(settings: Settings, state: StateDir) -> tuple[ChildProcess, Weights, str | None]:
    """Fetch weights, render the command and start vLLM; also the internal token its API guard
    takes from the supervisor (None without a guard)."""
    began = time.monotonic()
    state.write_phase("weights")
    weights = ensure_weights(settings, lambda folder, total: state.write_phase("download", folder=str(folder),
                                                                              total_bytes=total))
    metrics.phase_done("weights", time.monotonic() - began)
    command = render_command(settings, weights.path)
    env = {**inherited_environment(), **command.env}
    token = None
    if GUARD_ENV in command.env and settings.node_role != "worker":
        token = secrets.token_urlsafe(32)
        scrub.remember(token)
        env = {**bundle_importable(env), TOKEN_ENV: token}
    if settings.platform == "cpu" and settings.compile_cache_dir is not None:
        state.write_phase("compile-cache")
        seed(settings.compile_cache_dir, settings.shipped_compile_cache_dir, sys.executable, env)
    log.info("starting vLLM:\n%s", command.to_shell())
    child = ChildProcess(command.argv, env)
    metrics.vllm_started()
    state.write_phase("vllm", server_pid=child.pid)
    state.write_state(url=settings.base_url, served_model_name=settings.served_model_name,
                      supervisor_pid=os.getpid(), server_pid=child.pid, model_path=str(weights.path),
                      fallback=weights.fallback, server_started_at=time.time(), role=settings.node_role)
    return child, weights, token


def bundle_importable(env: dict[str, str]) -> dict[str, str]:
    """`env` with the bundle's folder on PYTHONPATH, so vLLM's interpreter imports the API guard
    (the image sets it already; a `vllm` console script elsewhere would not find it)."""
    root = str(Path(__file__).resolve().parents[1])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return env if root in paths else {**env, "PYTHONPATH": os.pathsep.join([*paths, root])}


def as_supervisor(settings: Settings, token: str | None) -> Settings:
    """The settings the supervisor's own clients use: with a guard, its internal token as their key,
    so readiness, smoke and canary pass whatever the key file holds and are never shed."""
    return settings.model_copy(update={"api_key": SecretStr(token)}) if token else settings


def wait_for_api(settings: Settings, url: str, child: ChildProcess, deadline: float) -> float:
    """Seconds until the API at `url` serves the model; UserError when vLLM here exits first."""
    try:
        return wait_until_ready(url, settings.served_model_name, deadline, child.poll,
                                timeout=min(settings.request_timeout, 10.0), headers=bearer(settings.api_key))
    except ServerExited as exc:
        reason = classify(child.last_lines(0))
        if reason is None:
            raise UserError(f"{exc.message}; its last lines:\n" + "\n".join(child.last_lines())) from None
        raise UserError(f"vLLM could not start: {reason}") from None


def join_group(settings: Settings, child: ChildProcess, state: StateDir, deadline: float) -> None:
    """A worker: wait until its leader serves (so every node joined), then write the worker's ready marker."""
    log.info("worker %s of %s: vLLM runs headless; waiting for the leader at %s", settings.lws_worker_index,
             settings.lws_group_size, settings.leader_url)
    took = wait_for_api(settings, settings.leader_url, child, deadline)
    state.mark_ready(url=settings.base_url, served_model_name=settings.served_model_name, role="worker",
                     server_pid=child.pid, leader=settings.leader_url, at=time.time())
    metrics.phase_done("server_start", took)
    metrics.set_ready(True)
    log.info("ready: joined the group; %s serves %r", settings.leader_url, settings.served_model_name)


def become_ready(settings: Settings, child: ChildProcess, weights: Weights, state: StateDir,
                 deadline: float) -> None:
    """Wait for vLLM, run the smoke check, then write the ready marker."""
    headers = bearer(settings.api_key)
    took = wait_for_api(settings, settings.base_url, child, deadline)
    log.info("vLLM answers after %.1f s", took)
    metrics.phase_done("server_start", took)
    answered_at = time.time()
    state.write_phase("smoke")
    if settings.smoke_on_start:
        result = run_smoke(settings.base_url, settings.served_model_name, settings.smoke_prompt,
                           smoke_expectation(settings.smoke_expect, weights.fallback), settings.smoke_max_tokens,
                           settings.request_timeout, headers)
        if not result.ok:
            raise UserError(result.verdict)
        log.info(result.verdict)
        metrics.phase_done("smoke", time.time() - answered_at)
    state.mark_ready(url=settings.base_url, served_model_name=settings.served_model_name,
                     server_answered_at=answered_at, at=time.time(), role=settings.node_role)
    metrics.set_ready(True)
    log.info("ready: %s serves %r", settings.base_url, settings.served_model_name)


def watch(child: ChildProcess, termination_log: str, canary: Canary | None) -> int:
    """Block while vLLM runs; if it dies on its own, or `canary` calls it hung, say so and return non-zero."""
    while (status := child.poll()) is None:
        if canary is not None and canary.verdict is not None:
            return end_hung(child, canary.verdict, termination_log)
        time.sleep(WATCH_SECONDS)
    child.reap()
    log.error("vLLM exited unexpectedly with status %s; its last lines:\n%s", status, "\n".join(child.last_lines()))
    reason = classify(child.last_lines(0))
    write_termination_message(termination_log, f"vLLM exited unexpectedly with status {status}"
                              + (f": {reason}" if reason else ""))
    return exit_status(status) or 1


def end_hung(child: ChildProcess, verdict: str, termination_log: str) -> int:
    """Kill the hung server's whole group at once (a hung engine drains nothing) and return non-zero."""
    child.reap()
    message = f"{verdict}; vLLM was killed so that the restart policy starts it again"
    log.error(message)
    write_termination_message(termination_log, message)
    return 1


def serve(settings: Settings) -> int:
    """Run the server until it stops; return the process exit status."""
    state = StateDir(settings.state_dir)
    state.reset()
    log.info("effective settings %s", json.dumps(settings.public_dict(), sort_keys=True))
    began = time.monotonic()
    deadline = began + settings.startup_timeout
    child: ChildProcess | None = None
    install_signal_handlers()
    try:
        metrics.serve_metrics(settings)
        child, weights, token = start_server(settings, state)
        clients = as_supervisor(settings, token)
        if settings.node_role == "worker":
            join_group(settings, child, state, deadline)
        else:
            become_ready(clients, child, weights, state, deadline)
        metrics.phase_done("ready", time.monotonic() - began)
        canary = start_canary(clients, state) if settings.node_role != "worker" else None
        try:
            return watch(child, settings.termination_log, canary if settings.canary_action == "restart" else None)
        finally:
            # Before vLLM is stopped: a draining server is not a hung one.
            if canary is not None:
                canary.stop()
    except StopRequested as stop:
        log.info("%s received; stopping", stop)
        if child is None:
            return 128 + stop.signum
        status = child.stop(settings.stop_grace_period)
        log.info("vLLM stopped with status %s", status)
        return exit_status(status)
    except UserError as exc:
        write_termination_message(settings.termination_log, exc.message.splitlines()[0])
        raise
    finally:
        # Whatever ended the run, nothing of vLLM's process group outlives the supervisor
        # (stop() on an exited server only kills what is left of its group).
        metrics.set_ready(False)
        if child is not None:
            child.stop(settings.stop_grace_period)
        state.reset()
