"""Small HTTP helpers shared by the readiness wait and the smoke check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from pydantic import SecretStr

Headers = Mapping[str, str]


def bearer(api_key: SecretStr | str | None) -> dict[str, str]:
    """The Authorization header the API guard wants; none when no key is set."""
    if api_key is None:
        return {}
    value = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return {"Authorization": f"Bearer {value}"}


def get_json(url: str, timeout: float, headers: Headers | None = None) -> tuple[int, Any]:
    """GET a URL: status and parsed JSON body (None when not JSON)."""
    response = requests.get(url, timeout=timeout, headers=dict(headers or {}))
    return response.status_code, _json_or_none(response)


def post_json(url: str, body: dict[str, Any], timeout: float, headers: Headers | None = None) -> tuple[int, Any]:
    """POST a JSON body: status and parsed JSON answer (None when not JSON)."""
    response = requests.post(url, json=body, timeout=timeout, headers=dict(headers or {}))
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
