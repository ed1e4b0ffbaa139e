"""Where things live is defined once, in scripts/paths.sh: the Makefile and Python's
testbed/paths.py read it from there, and see what the shell sees."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def from_shell(name: str, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-c", f'. scripts/paths.sh && echo "${name}"'], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def python_cache(env: dict[str, str]) -> str:
    code = "from testbed.paths import BUNDLE_CACHE; print(BUNDLE_CACHE)"
    done = subprocess.run(["python3", "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("override", [None, "/srv/bundle-cache"])
def test_shell_and_python_agree_on_the_cache_root(tmp_path, override):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    if override:
        env["BUNDLE_CACHE"] = override
    expected = override or str(tmp_path / ".cache" / "ascend-serve-bundle")
    assert from_shell("BUNDLE_CACHE", env) == python_cache(env) == expected


def test_the_makefile_takes_the_cache_root_and_native_state_from_paths_sh(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run(["make", "-s", "-p", "-n", "help"], cwd=ROOT, env=env, capture_output=True, text=True)
    values = dict(line.split(" := ", 1) for line in done.stdout.splitlines()
                  if line.startswith(("BUNDLE_CACHE :=", "NATIVE_STATE_DIR :=")))
    assert values == {name: from_shell(name, env) for name in ("BUNDLE_CACHE", "NATIVE_STATE_DIR")}
