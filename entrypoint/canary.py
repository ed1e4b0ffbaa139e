"""The engine canary: proof that vLLM still generates, recorded for `healthcheck live`.

vLLM's /health asks only the API server whether the engine core has been declared dead;
an engine core that hangs (stopped, deadlocked, stuck in a kernel) leaves /health at 200.
So every CANARY_INTERVAL seconds the supervisor takes one look:

1. vLLM's /metrics shows requests in flight and its token counters advanced since the
   last look: the engine works ("busy, progressing"); nothing is sent.
2. Otherwise (idle, or busy without progress) it sends a 1-token completion bounded by
   CANARY_TIMEOUT. An answer is a success. No answer is a failure, unless the token
   counters advanced meanwhile: a canary queued behind real load is not a hung engine.

After a failed look the next one comes within RETRY_SECONDS, not a whole interval: a hang
is confirmed (or dismissed) in seconds. Each look is written to STATE_DIR/canary.json with
the count of consecutive failures, the limit (CANARY_FAILURES) and the age after which the
record itself is stale (the supervisor stopped looking). The healthcheck judges from that
file; it never generates. At the limit, `verdict` holds the reason, which the supervisor
acts on (CANARY_ACTION=restart).

A hung engine reaches the limit within about CANARY_INTERVAL + CANARY_FAILURES x
(CANARY_TIMEOUT + RETRY_SECONDS) seconds. That span must exceed the longest stretch in
which a healthy engine finishes no step for anyone (one huge prefill with nothing else
running): the counters move only when a step produces tokens.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass

import requests

from entrypoint import metrics
from entrypoint.http import bearer
from entrypoint.settings import Settings
from entrypoint.state import StateDir

log = logging.getLogger("entrypoint.canary")
RETRY_SECONDS = 2.0  # after a failed look: long enough not to hammer a struggling server
METRICS_TIMEOUT_SECONDS = 5.0  # a /metrics read is cheap; longer means the API server itself is stuck
CANARY_PROMPT = "Hello"
# Counters that move whenever the engine finishes a step for someone (vLLM's Prometheus names).
PROGRESS_COUNTERS = frozenset({"vllm:generation_tokens_total", "vllm:prompt_tokens_total",
                               "vllm:iteration_tokens_total_count"})
PENDING_GAUGES = frozenset({"vllm:num_requests_running", "vllm:num_requests_waiting"})
SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{.*\})?\s+(\S+)")


@dataclass(frozen=True)
class EngineLoad:
    """What /metrics says: requests in flight, and a number that grows with engine work."""

    pending: float
    progress: float


def summed(text: str, names: Collection[str]) -> dict[str, float]:
    """Each named sample of a Prometheus text page summed over its label sets; a name with no
    readable sample is left out."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if not match or match.group(1) not in names:
            continue
        try:
            number = float(match.group(2))
        except ValueError:
            continue
        sums[match.group(1)] = sums.get(match.group(1), 0.0) + number
    return sums


def parse_load(text: str) -> EngineLoad | None:
    """Sum the pending gauges and progress counters over all label sets; None without them
    (stats disabled, or not vLLM)."""
    sums = summed(text, PENDING_GAUGES | PROGRESS_COUNTERS)
    if not sums:
        return None
    return EngineLoad(sum(v for k, v in sums.items() if k in PENDING_GAUGES),
                      sum(v for k, v in sums.items() if k in PROGRESS_COUNTERS))


@dataclass
class Look:
    """One canary look, as written to canary.json."""

    ok: bool
    reason: str
    seconds: float | None = None
    error: str | None = None


class Canary:
    """The looks, the consecutive-failure count and the record they leave in the state folder."""

    def __init__(self, base_url: str, model: str, interval: float, timeout: float, failures: int,
                 state: StateDir, api_key: str | None = None) -> None:
        self.base_url, self.model, self.state = base_url, model, state
        self.interval, self.timeout, self.failures = interval, timeout, failures
        # The key goes into request headers only, never into the state folder.
        self._headers = bearer(api_key or None)
        self.metrics_timeout = min(timeout, METRICS_TIMEOUT_SECONDS)
        self.consecutive_failures = 0
        self.verdict: str | None = None  # why the engine counts as hung, once the failures reach the limit
        self._last: EngineLoad | None = None
        self._stop = threading.Event()
        self._writing = threading.Lock()  # stop() waits out a write, so none lands after the state reset
        self._thread: threading.Thread | None = None

    @property
    def retry(self) -> float:
        """Seconds before the look after a failed one."""
        return min(self.interval, RETRY_SECONDS)

    @property
    def stale_after(self) -> float:
        """Seconds after which a record means the supervisor stopped looking: as many
        longest-possible looks as it takes failures to fail live."""
        longest_look = self.interval + self.timeout + 2 * self.metrics_timeout
        return self.failures * longest_look

    def load(self) -> EngineLoad | None:
        """The engine's load from /metrics, or None when it cannot be read."""
        try:
            response = requests.get(f"{self.base_url}/metrics", headers=self._headers, timeout=self.metrics_timeout)
        except requests.RequestException:
            return None
        return parse_load(response.text) if response.status_code == 200 else None

    def generate(self) -> Look:
        """Send the 1-token completion."""
        started = time.monotonic()
        body = {"model": self.model, "prompt": CANARY_PROMPT, "max_tokens": 1, "temperature": 0}
        try:
            response = requests.post(f"{self.base_url}/v1/completions", json=body, headers=self._headers,
                                     timeout=self.timeout)
        except requests.RequestException as exc:
            seconds = time.monotonic() - started
            return Look(False, "no answer to the 1-token completion", seconds, f"{exc.__class__.__name__}: {exc}")
        seconds = time.monotonic() - started
        if response.status_code != 200:
            return Look(False, f"the 1-token completion got HTTP {response.status_code}", seconds,
                        response.text[:200])
        return Look(True, "the 1-token completion answered", seconds)

    def look(self) -> Look:
        """One look: busy and progressing, or a canary generation judged against progress."""
        before = self.load()
        progressed = before is not None and self._last is not None and before.progress > self._last.progress
        if before is not None and before.pending > 0 and progressed:
            self._last = before
            return Look(True, f"busy, progressing ({before.pending:g} requests in flight)")
        result = self.generate()
        after = self.load()
        self._last = after or before
        if not result.ok and before is not None and after is not None and after.progress > before.progress:
            return Look(True, f"busy, progressing (the canary waited behind {after.pending:g} requests)",
                        result.seconds, result.error)
        return result

    def record(self, look: Look) -> None:
        """Count consecutive failures and write canary.json."""
        if look.ok:
            if self.consecutive_failures:
                log.info("canary: the engine answers again (%s)", look.reason)
            self.consecutive_failures = 0
            self.verdict = None
        else:
            self.consecutive_failures += 1
            log.warning("canary failed (%d of %d in a row): %s%s", self.consecutive_failures, self.failures,
                        look.reason, f": {look.error}" if look.error else "")
            if self.consecutive_failures >= self.failures:
                self.verdict = f"the engine canary failed {self.consecutive_failures} times in a row ({look.reason})"
        metrics.canary_looked(look.ok, look.seconds, self.consecutive_failures)
        # `monotonic` is the system-wide CLOCK_MONOTONIC the healthcheck compares with (a
        # wall-clock jump must not make a record stale); `at` is for people.
        self.state.write_canary(**asdict(look), at=time.time(), monotonic=time.monotonic(),
                                consecutive_failures=self.consecutive_failures, failures_limit=self.failures,
                                interval=self.interval, stale_after=self.stale_after)

    def _run(self) -> None:
        self._last = self.load()
        while not self._stop.wait(self.retry if self.consecutive_failures else self.interval):
            try:
                look = self.look()
            except Exception as exc:  # a bug here must show in the probe's line, not kill the thread silently
                log.exception("canary look failed")
                look = Look(False, "the canary itself failed", error=f"{exc.__class__.__name__}: {exc}")
            with self._writing:
                if not self._stop.is_set():
                    self.record(look)

    def start(self) -> None:
        """Record a first success (the server just passed its smoke check) and look every interval."""
        self.record(Look(True, "ready"))
        self._thread = threading.Thread(target=self._run, name="canary", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop looking; a look in progress ends within its timeouts and records nothing."""
        with self._writing:
            self._stop.set()


def start_canary(settings: Settings, state: StateDir) -> Canary | None:
    """Start the canary for a ready server, unless CANARY_INTERVAL is 0."""
    if settings.canary_interval == 0:
        return None
    canary = Canary(settings.base_url, settings.served_model_name, settings.canary_interval,
                    settings.canary_timeout, settings.canary_failures, state, settings.api_key_value)
    canary.start()
    log.info("canary: a look every %g s, a 1-token completion when idle (timeout %g s); live fails after %d "
             "failures in a row%s", settings.canary_interval, settings.canary_timeout, settings.canary_failures,
             ", then the supervisor stops vLLM and exits" if settings.canary_action == "restart" else "")
    return canary
