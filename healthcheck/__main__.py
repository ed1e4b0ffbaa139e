"""`python -m healthcheck startup|ready|live [--state-dir DIR] [--timeout S]`: exit 0 or 1, one line.

Whatever the state folder holds, the probe prints one line and exits 0 or 1 inside its
--timeout (interpreter start included); a bad command line exits 2 with one line. A
watchdog thread ends the process at the deadline, whatever the probe is blocked in.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from entrypoint.state import DEFAULT_STATE_DIR
from healthcheck.probes import PROBES, run_probe

# The native server's state folder in the checkout this healthcheck belongs to (`make up`
# without Docker: NATIVE_STATE_DIR in scripts/paths.sh), so the probe typed at the checkout
# finds that server; the image has no such folder and keeps the supervisor's default.
CHECKOUT_STATE_DIR = Path(__file__).resolve().parents[1] / ".run" / "state"
MAX_TIMEOUT_SECONDS = 3600.0
# Left between the watchdog's deadline and --timeout for writing the line and exiting (a
# tenth of a short timeout): on a loaded machine that takes tens of milliseconds.
EXIT_RESERVE_SECONDS = 0.25
MAX_LINE_CHARS = 400
# Everything str.splitlines() would break on, and other control characters.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_speaking = threading.Lock()


def one_line(text: str) -> str:
    """`text` escaped into one bounded line, whatever the state files held."""
    flat = _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)
    return flat if len(flat) <= MAX_LINE_CHARS else flat[:MAX_LINE_CHARS - 3] + "..."


def say(fd: int, text: str) -> bool:
    """Write the probe's one line, once per process: False when another thread already did.
    A closed or broken stdout is ignored; the exit code still carries the verdict."""
    if not _speaking.acquire(blocking=False):
        return False
    data = (one_line(text) + "\n").encode("utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass
    return True


def seconds_since_process_start() -> float:
    """How long ago the kernel started this process: the interpreter's start counts against
    the timeout too. 0 where /proc cannot say."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def timeout_seconds(text: str) -> float:
    """--timeout: a finite number of seconds in (0, MAX_TIMEOUT_SECONDS]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_SECONDS):
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: a number of seconds > 0 and <= {MAX_TIMEOUT_SECONDS:g}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (no usage block) and exit 2."""

    def error(self, message: str) -> NoReturn:
        say(2, f"{self.prog}: {message}")
        os._exit(2)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            say(2, f"{self.prog}: {message}")
        quiet_exit(status)  # after --help, which may have gone to a closed pipe


def default_state_dir(checkout: Path = CHECKOUT_STATE_DIR) -> Path:
    """The checkout's native state folder when a native `make up` made it, else the supervisor's default."""
    return checkout if checkout.is_dir() else DEFAULT_STATE_DIR


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--state-dir", type=Path, default=default_state_dir(),
                        help="the supervisor's STATE_DIR (default: the checkout's .run/state after a native "
                             f"`make up`, else {DEFAULT_STATE_DIR})")
    parser.add_argument("--timeout", type=timeout_seconds, default=5.0,
                        help="seconds before the probe fails, interpreter start included (default: %(default)s)")
    return parser.parse_args(argv)


def keep_standard_fds_open() -> None:
    """Put /dev/null on a closed stdin, stdout or stderr, so no state file or socket the probe
    opens takes its number and receives the verdict line."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free number: this one


def start_watchdog(probe: str, timeout: float, deadline: float) -> None:
    """End the process with a FAIL line at the deadline, whatever the probe is blocked in."""
    def expire() -> None:
        if say(1, f"{probe}: FAIL: timed out after {timeout:g} s"):
            os._exit(1)

    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
    watchdog.daemon = True
    watchdog.start()


def main() -> int:
    """Parse, probe under the watchdog, print one line."""
    keep_standard_fds_open()
    args = parse_args(sys.argv[1:])
    # At most half the timeout goes to the start, so a clock /proc reads oddly (a sandbox)
    # can never fail every probe at once.
    started = min(seconds_since_process_start(), args.timeout / 2)
    deadline = time.monotonic() + args.timeout - started - min(EXIT_RESERVE_SECONDS, args.timeout / 10)
    start_watchdog(args.probe, args.timeout, deadline)
    try:
        ok, message = run_probe(args.probe, args.state_dir, deadline)
    except Exception as exc:  # the last guard of "one line, exit 0 or 1": never a traceback
        ok, message = False, f"the probe itself failed: {exc.__class__.__name__}: {exc}"
    if not say(1, f"{args.probe}: {'OK' if ok else 'FAIL'}: {message}"):
        time.sleep(MAX_TIMEOUT_SECONDS)  # the watchdog spoke first and is ending the process
    return 0 if ok else 1


def quiet_exit(code: int) -> NoReturn:
    """Exit with `code` now, even when stdout is a closed pipe: a failed flush at shutdown
    would otherwise print BrokenPipeError and exit 120. Skipping the interpreter's teardown
    keeps the exit inside the timeout; the verdict went out unbuffered already."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    try:
        quiet_exit(main())
    except BrokenPipeError:  # --help into a closed pipe
        quiet_exit(0)
