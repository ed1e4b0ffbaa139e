"""Wait until the server answers: /health is 200 and /v1/models lists the served name.

With API_KEY set, the API guard wants a key on /v1 but leaves /health open; `headers` carry the
key (the supervisor's own token, entrypoint/api_guard.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import requests
import tenacity

from entrypoint.errors import UserError
from entrypoint.http import Headers, get_json, model_ids

log = logging.getLogger("entrypoint.readiness")
POLL_SECONDS = 0.5  # short: time-to-ready is what operators wait on
PROGRESS_EVERY_SECONDS = 30


class NotReadyYet(Exception):
    """The server is starting; ask again."""


class ServerExited(UserError):
    """The server died before it was ready."""


def probe(base_url: str, served_name: str, timeout: float, headers: Headers | None = None) -> None:
    """Raise NotReadyYet unless /health is 200 and /v1/models lists the served name."""
    try:
        status, _ = get_json(f"{base_url}/health", timeout)
        if status != 200:
            raise NotReadyYet(f"/health {status}")
        status, body = get_json(f"{base_url}/v1/models", timeout, headers)
    except requests.RequestException as exc:
        raise NotReadyYet(exc.__class__.__name__) from None
    if status == 401:
        # Waiting will not help: vLLM has a key (--api-key in EXTRA_ARGS, an inherited VLLM_API_KEY)
        # that the bundle does not know, or not this one.
        raise UserError("vLLM answers 401 on /v1/models: it wants an API key the bundle does not send; set "
                        "API_KEY or API_KEY_FILE (not --api-key in EXTRA_ARGS or VLLM_API_KEY)")
    if status != 200 or served_name not in model_ids(body):
        raise NotReadyYet(f"/v1/models {status}")


def poll_until(attempt: Callable[[], None], deadline: float, poll: float = POLL_SECONDS,
               before_sleep: Callable[[tenacity.RetryCallState], None] | None = None) -> float:
    """Call `attempt` every `poll` seconds until it stops raising NotReadyYet; the seconds that took.

    The last NotReadyYet escapes once the monotonic deadline passes; any other error at once.
    """
    started = time.monotonic()
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(NotReadyYet), wait=tenacity.wait_fixed(poll),
        stop=tenacity.stop_before_delay(max(0.0, deadline - started)), before_sleep=before_sleep, reraise=True)
    retrying(attempt)
    return time.monotonic() - started


def wait_until_ready(base_url: str, served_name: str, deadline: float, exited: Callable[[], int | None],
                     timeout: float = 5.0, headers: Headers | None = None, poll: float = POLL_SECONDS) -> float:
    """Poll until ready; fail at once if the server exits, or when the monotonic deadline passes."""
    started = time.monotonic()
    last_note = [started]

    def attempt() -> None:
        status = exited()
        if status is not None:
            raise ServerExited(f"vLLM exited with status {status} before it was ready")
        probe(base_url, served_name, timeout, headers)

    def note(state: tenacity.RetryCallState) -> None:
        if time.monotonic() - last_note[0] >= PROGRESS_EVERY_SECONDS:
            last_note[0] = time.monotonic()
            log.info("waiting for vLLM at %s (%.0f s so far: %s)", base_url, time.monotonic() - started,
                     state.outcome.exception() if state.outcome else "starting")

    try:
        return poll_until(attempt, deadline, poll, note)
    except NotReadyYet as exc:
        raise UserError(f"vLLM not ready after {time.monotonic() - started:.0f} s (STARTUP_TIMEOUT): {exc}") from None
