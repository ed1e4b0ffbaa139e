"""Hostile settings, by kind, as a user or an env file could give them: each case is an
environment (and optionally an env file's bytes or a special file) that `python -m
entrypoint render` must refuse with exit 2 and one line naming the variable or the file.

bench/hostile.py runs them beside the probes' hostile state folders; the unit tests of
tests/unit/test_hostile_settings.py hold each kind's rules in detail.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

# Builds the input in a fresh folder and returns (extra environment, extra CLI arguments).
Prepare = Callable[[Path], tuple[dict[str, str], list[str]]]


class SettingsCase(NamedTuple):
    kind: str
    name: str
    prepare: Prepare


def _env(**values: str) -> Prepare:
    return lambda folder: (values, [])


def _env_file(make: Callable[[Path], Path]) -> Prepare:
    return lambda folder: ({}, ["--env-file", str(make(folder))])


def _write(content: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "bad.env"
        path.write_bytes(content)
        return path
    return make


def _fifo(folder: Path) -> Path:
    path = folder / "fifo.env"
    os.mkfifo(path)
    return path


def _symlink_to(target: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "link.env"
        path.symlink_to(target)
        return path
    return make


def _secret_file(make: Callable[[Path], Path]) -> Prepare:
    return lambda folder: ({"API_KEY_FILE": str(make(folder))}, [])


ENV_FILES = {
    "missing": _env_file(lambda folder: folder / "absent.env"),
    "a folder": _env_file(lambda folder: folder),
    "/dev/zero": _env_file(lambda folder: Path("/dev/zero")),
    "a FIFO": _env_file(_fifo),
    "a symlink to /dev/zero": _env_file(_symlink_to("/dev/zero")),
    "not UTF-8": _env_file(_write(b"MODEL_ID=google/\xff\xfe\n")),
    "a malformed line": _env_file(_write(b"PORT=8000\nthis is not a setting line\n")),
    "over the size cap": _env_file(_write(b"# " + b"x" * (2 * 1024 * 1024) + b"\n")),
}
NUMBERS = {
    "REQUEST_TIMEOUT=inf": _env(REQUEST_TIMEOUT="inf"),
    "REQUEST_TIMEOUT=1e10": _env(REQUEST_TIMEOUT="1e10"),
    "REQUEST_TIMEOUT=nan": _env(REQUEST_TIMEOUT="nan"),
    "STARTUP_TIMEOUT=Infinity": _env(STARTUP_TIMEOUT="Infinity"),
    "TENSOR_PARALLEL_SIZE=2_0": _env(TENSOR_PARALLEL_SIZE="2_0"),
    "PORT=99999": _env(PORT="99999"),
    "PORT=-1": _env(PORT="-1"),
    "PORT full-width digits": _env(PORT="\uff18\uff10\uff10\uff10"),
    "MAX_NUM_SEQS=0x10": _env(MAX_NUM_SEQS="0x10"),
    "SEED=1.5": _env(SEED="1.5"),
    "GPU_MEMORY_UTILIZATION=1.5": _env(GPU_MEMORY_UTILIZATION="1.5"),
    "CANARY_FAILURES=10**9": _env(CANARY_FAILURES="1000000000"),
    "LWS_WORKER_INDEX=first": _env(LWS_WORKER_INDEX="first", LWS_GROUP_SIZE="2", LWS_LEADER_ADDRESS="lead"),
    "LWS_GROUP_SIZE=1": _env(LWS_GROUP_SIZE="1", LWS_WORKER_INDEX="0", LWS_LEADER_ADDRESS="lead"),
    "LWS_WORKER_INDEX=2 of 2": _env(LWS_WORKER_INDEX="2", LWS_GROUP_SIZE="2", LWS_LEADER_ADDRESS="lead",
                                    TENSOR_PARALLEL_SIZE="2"),
}
NAMES = {
    "MODEL_ID=google/..": _env(MODEL_ID="google/.."),
    "MODEL_ID=evil/--trust-remote-code": _env(MODEL_ID="evil/--trust-remote-code"),
    "MODEL_ID with a trailing newline": _env(MODEL_ID="google/gemma-3-270m-it\n"),
    "MODEL_ID of 300 characters": _env(MODEL_ID="a/" + "b" * 298),
    "MODEL_REVISION=../../../../x": _env(MODEL_REVISION="../../../../x"),
    "MODEL_REVISION=/etc": _env(MODEL_REVISION="/etc"),
    "SERVED_MODEL_NAME=--port": _env(SERVED_MODEL_NAME="--port"),
    "SERVED_MODEL_NAME with a newline": _env(SERVED_MODEL_NAME="a\nb"),
    "SERVED_MODEL_NAME with a carriage return": _env(SERVED_MODEL_NAME="a\rb"),
    "SERVED_MODEL_NAME=..": _env(SERVED_MODEL_NAME=".."),
    "PLATFORM_VARIANT=../../etc": _env(PLATFORM_VARIANT="../../etc"),
    "MODEL_PROFILE=nope": _env(MODEL_PROFILE="nope"),
    "IMAGE_VERSION=v9": _env(IMAGE_VERSION="v9"),
    "LWS_LEADER_ADDRESS=--port": _env(LWS_LEADER_ADDRESS="--port", LWS_GROUP_SIZE="2", LWS_WORKER_INDEX="1"),
    "LWS_LEADER_ADDRESS with a space": _env(LWS_LEADER_ADDRESS="a b", LWS_GROUP_SIZE="2", LWS_WORKER_INDEX="1"),
}
URLS = {
    "port 99999": _env(MODELSCOPE_ENDPOINT="http://hub.example:99999"),
    "a space": _env(MODELSCOPE_ENDPOINT="http://hub example/"),
    "a newline": _env(MODELSCOPE_ENDPOINT="http://hub\n.example"),
    "ftp scheme": _env(MODELSCOPE_ENDPOINT="ftp://hub.example"),
    "no host": _env(MODELSCOPE_ENDPOINT="http://"),
    "unclosed IPv6": _env(MODELSCOPE_ENDPOINT="http://[::1"),
}
MANAGED_FLAGS = {flag: _env(EXTRA_ARGS=flag) for flag in (
    "--port 9000", "--host 1.2.3.4", "--model /etc", "--served-model-name x", "--api-key k", "--api-k=k",
    "--max-model-len 5", "--max_model_len=5", "--uds /tmp/s", "'unbalanced")}
SECRETS = {
    "API_KEY with a space": _env(API_KEY="a b"),
    "API_KEY and API_KEY_FILE": lambda folder: ({"API_KEY": "k", "API_KEY_FILE": str(_write(b"k\n")(folder))}, []),
    "API_KEY_FILE missing": _secret_file(lambda folder: folder / "absent"),
    "API_KEY_FILE a folder": _secret_file(lambda folder: folder),
    "API_KEY_FILE /dev/zero": _secret_file(lambda folder: Path("/dev/zero")),
    "API_KEY_FILE a FIFO": _secret_file(_fifo),
}
KINDS = {"env file": ENV_FILES, "numbers": NUMBERS, "names that become paths or flags": NAMES,
         "URLs": URLS, "managed flags in EXTRA_ARGS": MANAGED_FLAGS, "secrets": SECRETS}


def cases() -> list[SettingsCase]:
    return [SettingsCase(kind, name, prepare) for kind, table in KINDS.items() for name, prepare in table.items()]


def render_argv(case: SettingsCase, folder: Path) -> list[str]:
    """`render` on the NPU (no host-dependent lines) in a clean environment plus the case's."""
    extra_env, extra_args = case.prepare(folder)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "PLATFORM": "npu",
            "MODEL_CACHE_DIR": str(folder / "cache")}
    assignments = [f"{key}={value}" for key, value in {**base, **extra_env}.items()]
    return ["/usr/bin/env", "-i", *assignments, sys.executable, "-m", "entrypoint", *extra_args, "render"]
