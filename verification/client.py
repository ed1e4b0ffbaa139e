"""A small client for the server's OpenAI-compatible API: chat (whole or streamed) and completions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from entrypoint.errors import UserError
from entrypoint.http import bearer
from entrypoint.settings import Settings

Messages = list[dict[str, str]]
REQUEST_TIMEOUT = 300.0  # seconds; a long CPU answer, not a hang


class ServerUnreachable(UserError):
    """No server answers at the URL (refused, timed out, or not an OpenAI-compatible API)."""


@dataclass
class Answer:
    """One answer: its text, the server's token usage and the wall time it took."""

    text: str
    usage: dict[str, Any] = field(default_factory=dict)
    latency_s: float = 0.0


@dataclass
class ApiClient:
    """Talks to one server as one served model name."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = REQUEST_TIMEOUT

    def _headers(self) -> dict[str, str]:
        return bearer(self.api_key or None)

    def _post(self, path: str, body: dict[str, Any], stream: bool = False) -> requests.Response:
        url = f"{self.base_url.rstrip('/')}{path}"
        try:
            response = requests.post(url, json={"model": self.model, **body}, headers=self._headers(),
                                     timeout=self.timeout, stream=stream)
        except requests.ConnectionError:
            raise ServerUnreachable(f"no server answers at {self.base_url}: start it (`make up` or "
                                    "`python -m entrypoint serve`) or pass --url") from None
        except requests.Timeout:
            raise ServerUnreachable(f"{url} did not answer within {self.timeout:g} s: is the server "
                                    "overloaded or still starting?") from None
        if response.status_code != 200:
            raise ServerUnreachable(f"POST {url} -> {response.status_code}: {response.text[:300].strip()}")
        return response

    def chat(self, messages: Messages, temperature: float = 0.0, max_tokens: int = 256) -> Answer:
        """One chat completion, waited for whole."""
        start = time.monotonic()
        body = self._post("/v1/chat/completions", {"messages": messages, "temperature": temperature,
                                                   "max_tokens": max_tokens}).json()
        return Answer(body["choices"][0]["message"]["content"] or "", body.get("usage") or {},
                      time.monotonic() - start)

    def stream_chat(self, messages: Messages, temperature: float = 0.0, max_tokens: int = 256) -> Iterator[str]:
        """A chat completion as server-sent events: yields text pieces as they arrive."""
        response = self._post("/v1/chat/completions", {"messages": messages, "temperature": temperature,
                                                       "max_tokens": max_tokens, "stream": True}, stream=True)
        with response:
            for piece in sse_data(response.iter_lines(decode_unicode=False)):
                delta = piece["choices"][0].get("delta", {}) if piece.get("choices") else {}
                if delta.get("content"):
                    yield delta["content"]

    def complete(self, prompt: str | list[int], temperature: float = 0.0, max_tokens: int = 32,
                 **extra: Any) -> dict[str, Any]:
        """One raw /v1/completions answer (extra fields such as `stop` or `prompt_logprobs` pass through)."""
        return self._post("/v1/completions", {"prompt": prompt, "temperature": temperature,
                                              "max_tokens": max_tokens, **extra}).json()

    def models(self) -> list[dict[str, Any]]:
        """The /v1/models entries (each has `id` and, on vLLM, `root`: the weights it serves)."""
        try:
            response = requests.get(f"{self.base_url.rstrip('/')}/v1/models", headers=self._headers(),
                                    timeout=30)
        except requests.RequestException:
            raise ServerUnreachable(f"no server answers at {self.base_url}: start it or pass --url") from None
        return list(response.json().get("data") or []) if response.status_code == 200 else []


def sse_data(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, up to `data: [DONE]`."""
    for raw in lines:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


def client_from_settings(settings: Settings, url: str | None = None, model: str | None = None) -> ApiClient:
    """The client for the bundle's own server; --url/--model-name override the settings."""
    return ApiClient(url or settings.base_url, model or settings.served_model_name, settings.api_key_value)
