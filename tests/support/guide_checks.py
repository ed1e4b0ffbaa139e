"""The deployment guide's two smoke requests, asserted against a base URL."""

from __future__ import annotations

import requests

from entrypoint.settings import Settings
from testbed.fixture import SERVED_NAME

QUESTION = Settings.model_fields["smoke_prompt"].default  # the guide's question, the smoke check's default


def assert_guide_smoke_requests(base_url: str) -> None:
    """/v1/models lists the served name; the guide's chat completion answers with text."""
    models = requests.get(f"{base_url}/v1/models", timeout=30)
    assert models.status_code == 200 and SERVED_NAME in [m["id"] for m in models.json()["data"]]
    chat = requests.post(f"{base_url}/v1/chat/completions", timeout=120, json={
        "model": SERVED_NAME, "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": QUESTION}]})
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"].strip()
