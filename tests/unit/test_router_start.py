"""compose/router/start.sh: the router's admission settings become vllm-router's own flags,
bad values exit 2 with one line, and the router's key is the key file's first key."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
START = ROOT / "compose" / "router" / "start.sh"


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run start.sh with a vllm-router that prints its argv, one word a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "vllm-router"
    fake.write_text('#!/bin/sh\nfor word in "$@"; do echo "$word"; done\n')
    fake.chmod(0o755)
    return subprocess.run(["sh", str(START)], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "ROUTER_PROJECT": "p", **env})


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_admission_settings_map_to_the_routers_flags(tmp_path):
    done = start(tmp_path, ROUTER_MAX_CONCURRENT="16", ROUTER_QUEUE_SIZE="0", ROUTER_QUEUE_TIMEOUT="5")
    argv = done.stdout.split()
    assert done.returncode == 0, done.stderr
    assert (flag(argv, "--max-concurrent-requests"), flag(argv, "--queue-size"),
            flag(argv, "--queue-timeout-secs")) == ("16", "0", "5")


def test_unset_leaves_the_routers_defaults(tmp_path):
    argv = start(tmp_path).stdout.split()
    assert not {"--max-concurrent-requests", "--queue-size", "--queue-timeout-secs"} & set(argv)


@pytest.mark.parametrize(("name", "value"), [("ROUTER_MAX_CONCURRENT", "0"), ("ROUTER_QUEUE_SIZE", "-1"),
                                             ("ROUTER_QUEUE_TIMEOUT", "5s"), ("ROUTER_MAX_CONCURRENT", "08")])
def test_a_bad_value_exits_2_with_one_line(tmp_path, name, value):
    done = start(tmp_path, **{name: value})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"router: {name}={value} is not allowed: a whole number, "
                                                f"{0 if name == 'ROUTER_QUEUE_SIZE' else 1} or more"]


def test_the_routers_key_is_the_files_first(tmp_path):
    keys = tmp_path / "api_key"
    keys.write_text("# rotated in December\n\n  sk-first-1a2b \r\nsk-second-3c4d\n")
    argv = start(tmp_path, API_KEY_FILE=str(keys)).stdout.split()
    assert flag(argv, "--api-key") == "sk-first-1a2b"
    keys.write_text("# none yet\n")
    done = start(tmp_path, API_KEY_FILE=str(keys))
    assert done.returncode == 2 and "holds none" in done.stderr
