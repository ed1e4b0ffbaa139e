"""`python -m healthcheck startup|ready|live [--state-dir DIR] [--timeout S]`: exit 0 or 1, one line."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from entrypoint.state import DEFAULT_STATE_DIR
from healthcheck.probes import PROBES, run_probe


def main() -> int:
    """Parse, probe under a hard deadline, print one line."""
    parser = argparse.ArgumentParser(prog="healthcheck", description=__doc__)
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="the supervisor's STATE_DIR (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds before the probe fails")
    args = parser.parse_args()
    # The socket timeout bounds each step; the alarm bounds the whole probe, so a
    # probe never outlives the orchestrator's own timeout and piles up.
    signal.signal(signal.SIGALRM, lambda *_: (print(f"{args.probe}: timed out after {args.timeout} s"),
                                               sys.exit(1)))
    signal.setitimer(signal.ITIMER_REAL, args.timeout + 0.5)
    ok, message = run_probe(args.probe, args.state_dir, args.timeout)
    print(f"{args.probe}: {'OK' if ok else 'FAIL'}: {message}")
    return 0 if ok else 1


sys.exit(main())
