"""Small HTTP helpers shared by the readiness wait and the smoke check."""

from __future__ import annotations

from typing import Any

import requests


def get_json(url: str, timeout: float) -> tuple[int, Any]:
    """GET a URL: status and parsed JSON body (None when not JSON)."""
    response = requests.get(url, timeout=timeout)
    return response.status_code, _json_or_none(response)


def post_json(url: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
    """POST a JSON body: status and parsed JSON answer (None when not JSON)."""
    response = requests.post(url, json=body, timeout=timeout)
    return response.status_code, _json_or_none(response)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def model_ids(body: Any) -> list[str]:
    """The model ids of a /v1/models answer."""
    if not isinstance(body, dict):
        return []
    return [str(item.get("id")) for item in body.get("data") or [] if isinstance(item, dict)]
