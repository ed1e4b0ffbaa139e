"""The guide's two smoke checks: /v1/models lists the served name, and a chat completion answers."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from entrypoint.http import Headers, get_json, model_ids, post_json

log = logging.getLogger("entrypoint.smoke")


@dataclass
class SmokeResult:
    """The verdict and what was asked and answered."""

    ok: bool
    verdict: str
    checks: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON object for machines (`smoke --json`)."""
        return json.dumps(asdict(self))


def smoke_expectation(expect: str, fallback: bool) -> str:
    """The profile's expected answer, unless fallback weights (not MODEL_ID) are served."""
    if fallback and expect:
        log.warning("fallback weights are served: the smoke check asks only for a non-empty answer, not for %r",
                    expect)
        return ""
    return expect


def check_models(base_url: str, served_name: str, timeout: float, headers: Headers | None = None) -> tuple[bool, str]:
    """GET /v1/models is 200 and lists the served name."""
    status, body = get_json(f"{base_url}/v1/models", timeout, headers)
    names = model_ids(body)
    if status == 401:
        return False, "GET /v1/models -> 401: the server wants an API key; set API_KEY or API_KEY_FILE to its key"
    if status != 200 or served_name not in names:
        return False, f"GET /v1/models -> {status}, models {names}, expected {served_name!r}"
    return True, f"GET /v1/models -> 200, lists {served_name!r}"


def check_chat(base_url: str, served_name: str, prompt: str, expect: str, max_tokens: int,
               timeout: float, headers: Headers | None = None) -> tuple[bool, str]:
    """The guide's chat completion: 200, non-empty text, matching the profile's expectation if any."""
    body = {"model": served_name, "messages": [{"role": "user", "content": prompt}],
            "temperature": 0, "max_tokens": max_tokens}
    status, answer = post_json(f"{base_url}/v1/chat/completions", body, timeout, headers)
    try:
        text = answer["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        text = ""
    asked = f"asked {prompt!r}, got {status} {text.strip()!r}"
    if status != 200 or not text.strip():
        return False, f"chat completion failed: {asked}"
    if expect and not re.search(expect, text):
        return False, f"chat answer does not match {expect!r}: {asked}"
    return True, f"chat completion -> 200: {asked}"


def run_smoke(base_url: str, served_name: str, prompt: str, expect: str = "", max_tokens: int = 16,
              timeout: float = 60.0, headers: Headers | None = None) -> SmokeResult:
    """Both checks, stopping at the first failure; `headers` carry the API key (http.bearer)."""
    checks: dict[str, Any] = {}
    try:
        ok, checks["models"] = check_models(base_url, served_name, timeout, headers)
        if ok:
            ok, checks["chat"] = check_chat(base_url, served_name, prompt, expect, max_tokens, timeout, headers)
    except requests.RequestException as exc:
        ok, checks["error"] = False, f"{base_url} unreachable: {exc.__class__.__name__}: {exc}"
    failed = next((text for text in reversed(checks.values()) if not ok), "")
    verdict = f"smoke OK: {checks.get('chat', '')}" if ok else f"smoke FAILED: {failed}"
    return SmokeResult(ok=ok, verdict=verdict, checks=checks)
