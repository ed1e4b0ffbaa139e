"""Small HTTP helpers shared by the readiness wait and the smoke check.

Every request ends within its `timeout` in all (not per read: a server that trickles a
byte a second is cut off at the deadline) and reads at most BODY_MAX_BYTES of answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
from pydantic import SecretStr

Headers = Mapping[str, str]
BODY_MAX_BYTES = 4 * 2**20  # a /v1/models or a short chat answer is a few KiB


def bearer(api_key: SecretStr | str | None) -> dict[str, str]:
    """The Authorization header the API guard wants; none when no key is set."""
    if api_key is None:
        return {}
    value = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return {"Authorization": f"Bearer {value}"}


class AnswerTooLarge(requests.RequestException):
    """The server's answer passed BODY_MAX_BYTES."""


def get_json(url: str, timeout: float, headers: Headers | None = None) -> tuple[int, Any]:
    """GET a URL: status and parsed JSON body (None when not JSON)."""
    return _exchange("GET", url, None, timeout, headers)


def post_json(url: str, body: dict[str, Any], timeout: float, headers: Headers | None = None) -> tuple[int, Any]:
    """POST a JSON body: status and parsed JSON answer (None when not JSON)."""
    return _exchange("POST", url, body, timeout, headers)


def _exchange(method: str, url: str, body: dict[str, Any] | None, timeout: float,
              headers: Headers | None) -> tuple[int, Any]:
    """The request in a worker thread, given up at the deadline: requests bounds each read, not
    the whole, and a server dripping an endless header never lets a read time out."""
    outcome: list[tuple[int, Any]] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(_exchange_in_thread(method, url, body, timeout, headers))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=run, name="http-exchange", daemon=True)
    worker.start()
    worker.join(timeout)
    if failed:
        raise failed[0]
    if not outcome:
        raise requests.Timeout(f"no whole answer within {timeout:g} s")
    return outcome[0]


def _exchange_in_thread(method: str, url: str, body: dict[str, Any] | None, timeout: float,
                        headers: Headers | None) -> tuple[int, Any]:
    deadline = time.monotonic() + timeout
    with requests.request(method, url, json=body, timeout=timeout, headers=dict(headers or {}),
                          stream=True) as response:
        data = bytearray()
        for chunk in response.iter_content(chunk_size=64 * 1024):
            data += chunk
            if len(data) > BODY_MAX_BYTES:
                raise AnswerTooLarge(f"answer larger than {BODY_MAX_BYTES} bytes")
            if time.monotonic() > deadline:
                raise requests.Timeout(f"no whole answer within {timeout:g} s")
        return response.status_code, _json_or_none(bytes(data))


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def model_ids(body: Any) -> list[str]:
    """The model ids of a /v1/models answer."""
    if not isinstance(body, dict):
        return []
    return [str(item.get("id")) for item in body.get("data") or [] if isinstance(item, dict)]
