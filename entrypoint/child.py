"""The vLLM server as a child process: started in its own process group, its output
passed through and a bounded tail kept for error messages, stopped with a grace period."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

from entrypoint.scrub import scrub

log = logging.getLogger("entrypoint.child")
TAIL_LINES = 200  # enough to reach a worker's error above the engine's own traceback


class ChildProcess:
    """One supervised server process and its whole process group."""

    def __init__(self, argv: list[str], env: Mapping[str, str], output: TextIO | None = None) -> None:
        """Start the server; its output goes to `output` (a log file), else to this process's stdout."""
        # A session of its own: the group holds vLLM's engine workers too, so one killpg
        # reaches them all, and a terminal's Ctrl-C reaches only the supervisor.
        self.process = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._output = output
        self._pump = threading.Thread(target=self._pass_output, name="child-output", daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self.process.pid

    def _pass_output(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = scrub(raw.decode("utf-8", errors="replace"))
            self.tail.append(line.rstrip("\n"))
            sink = self._output or sys.stdout  # looked up per line: pytest swaps sys.stdout
            sink.write(line)
            sink.flush()

    def poll(self) -> int | None:
        """Exit status, or None while running."""
        return self.process.poll()

    def last_lines(self, count: int = 20) -> list[str]:
        """The child's last output lines (all of the kept tail when count is 0)."""
        self._pump.join(timeout=2)
        return list(self.tail)[-count:] if count else list(self.tail)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, grace_seconds: float) -> int:
        """SIGTERM, wait up to the grace period, then SIGKILL the whole group; return the exit status."""
        if self.poll() is None:
            # Only the server gets SIGTERM: it drains its engine workers itself. A SIGTERM to
            # the whole group would stop the workers under it and abort accepted requests.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                log.warning("server still running %.0f s after SIGTERM; killing it", grace_seconds)
        self.reap()
        return self.process.returncode

    def reap(self) -> None:
        """Kill whatever is left of the group (workers orphaned by a dead server) and wait."""
        self._signal_group(signal.SIGKILL)
        self.process.wait()
        self._pump.join(timeout=2)


def exit_status(returncode: int) -> int:
    """A shell-style exit status: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode
