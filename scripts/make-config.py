"""The Makefile's variables, read the way the entrypoint reads its settings, and checked
before any recipe hands them to a shell.

    python3 scripts/make-config.py ENV_FILE NAME=VALUE|NAME? ...

NAME=VALUE: set on Make's command line or in the environment; it wins. NAME?: unset; the
.env file's value is taken, if it has one. Prints `NAME:=VALUE` for each value taken from
.env (Make evaluates them before its defaults), or one `error:` line naming the variable and
what is allowed, which Make stops on with nothing run. Standard library only.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from host_env import read_env_file

# Characters a value may carry through Make into a shell command line unquoted.
SAFE = re.compile(r"[A-Za-z0-9._/:@+,=-]*")
SAFE_ALLOWED = "letters, digits and . _ / : @ + , = - (no spaces or shell characters)"


def one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else "allowed: " + ", ".join(choices)


def integer(low: int, high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        ok = re.fullmatch(r"[0-9]{1,6}", value) and low <= int(value) <= high
        return None if ok else f"allowed: a whole number from {low} to {high}"
    return check


def pattern(regex: str, allowed: str) -> Callable[[str], str | None]:
    return lambda value: None if re.fullmatch(regex, value) else f"allowed: {allowed}"


def safe(value: str) -> str | None:
    return None if SAFE.fullmatch(value) else f"allowed: {SAFE_ALLOWED}"


RULES: dict[str, Callable[[str], str | None]] = {
    "PLATFORM": one_of("auto", "npu", "cpu", "cuda"),
    "ENGINE": one_of("auto", "docker", "native"),
    "PORT": integer(1, 65535),
    "PROMETHEUS_PORT": integer(1, 65535),
    "REPLICAS": integer(1, 64),
    "PROJECT": pattern(r"[a-z0-9][a-z0-9_-]{0,62}", "lower-case letters, digits, _ and -, starting with a letter "
                       "or digit (a Compose project name)"),
    "RENDER_FORMAT": one_of("shell", "json"),
    "WARM_ISAS": pattern(r"[a-z0-9_-]+( [a-z0-9_-]+)*", "instruction-set names separated by spaces, "
                         "such as: native avx2"),
    "TESTBED": one_of("0", "1"),
    "WARM": one_of("0", "1"),
    "NPU_DEVICES": pattern(r"[0-9]{1,3}(,[0-9]{1,3})*", "card numbers separated by commas, such as 0 or 0,1"),
    "NPU_DEVICE": pattern(r"[0-9]{1,3}", "one card number, such as 0 (npu-smi info lists them)"),
}


def problem(name: str, value: str) -> str | None:
    """The one line refusing `value` for `name`, or None."""
    check = RULES.get(name, safe)
    reason = check(value) if value else None
    return None if reason is None else f"{name}={value!r}: not usable; {reason}"


def main(env_file: str, items: list[str]) -> int:
    if env_file and (line := problem("ENV_FILE", env_file)):
        print("error: " + line)
        return 0
    from_file = read_env_file(Path(env_file)) if env_file else {}
    taken = []
    for item in items:
        name, given, value = item.partition("=") if "=" in item else (item.rstrip("?"), "", "")
        if not given:
            value = from_file.get(name, "").strip()
        line = problem(name, value)
        if line:
            print("error: " + (line if given else f"{line} (in {env_file})"))
            return 0
        if not given and value:
            taken.append(f"{name}:={value}")
    print(" ".join(taken))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
