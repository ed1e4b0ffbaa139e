"""One complete runtime lock per architecture (requirements/lock-runtime-<machine>.txt): each pins
the bundle's own dependencies (pyproject.toml) within their ranges, and each resolves against its
platform's wheels as a stranger's pip sees them (PyPI only; torch's +cpu build through the
documented TORCH_FIND_LINKS override, since this machine cannot reach PyTorch's CPU wheel index).

The resolution is pip's own (`pip install --dry-run --no-deps --platform ...`, wheel metadata only)
and its verdict is cached under BUNDLE_CACHE keyed by the lock and the platform, so a rerun costs
nothing until a lock changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from filelock import FileLock
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from testbed.paths import BUNDLE_CACHE

ROOT = Path(__file__).resolve().parents[2]
MACHINES = ["x86_64", "aarch64"]
# The CPU image's and the project venv's Python (Debian bookworm's 3.11) and glibc (2.36).
PYTHON = "3.11"
GLIBC_MINOR = 36
CACHE = BUNDLE_CACHE / "lock-checks"


def lock(machine: str) -> dict[str, str]:
    path = ROOT / "requirements" / f"lock-runtime-{machine}.txt"
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def lock_lines(machine: str) -> list[str]:
    return [line for line in (ROOT / "requirements" / f"lock-runtime-{machine}.txt").read_text().splitlines()
            if line and not line.startswith("#")]


def platforms(machine: str) -> list[str]:
    """The wheel platform tags a bookworm host of this machine accepts, newest first."""
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR, 4, -1)]
    return [*tags, f"manylinux2014_{machine}", f"linux_{machine}"]


def stranger_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_INDEX_URL"}}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_CACHE_DIR": str(CACHE / "pip")}


def resolve(machine: str, requirements: list[str], tmp: Path, *sources: str) -> set[str]:
    """The names pip finds a wheel for on `machine`, each at the pinned version (no dependencies)."""
    tmp.mkdir(parents=True, exist_ok=True)
    wanted, report = tmp / "requirements.txt", tmp / "report.json"
    wanted.write_text("".join(f"{line}\n" for line in requirements))
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed",
            "--only-binary", ":all:", "--python-version", PYTHON, "--implementation", "cp",
            *(arg for tag in platforms(machine) for arg in ("--platform", tag)),
            "--target", str(tmp / "target"), "--report", str(report), *sources, "-r", str(wanted)]
    done = subprocess.run(argv, env=stranger_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{machine}: {done.stderr.strip()}"
    return {canonicalize_name(item["metadata"]["name"]) + "==" + item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


def cached_check(name: str, key_parts: list[str], check) -> None:
    """Run `check` unless it passed before for exactly these inputs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256("\n".join([*key_parts, PYTHON, *platforms(name)]).encode()).hexdigest()[:16]
    marker = CACHE / f"{name}-{key}.ok"
    with FileLock(str(CACHE / f"{name}.lock")):
        if not marker.exists():
            check()
            marker.touch()


def pinned(lines: list[str]) -> set[str]:
    return {f"{canonicalize_name(line.partition('==')[0])}=={Version(line.partition('==')[2])}" for line in lines}


@pytest.mark.parametrize("machine", MACHINES)
def test_the_lock_pins_every_bundle_dependency_within_its_range(machine: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = lock(machine)
    bad = [line for line in [*project["dependencies"], *project["optional-dependencies"]["verification"]]
           if (r := Requirement(line)) and (canonicalize_name(r.name) not in pins
                                            or not r.specifier.contains(pins[canonicalize_name(r.name)]))]
    assert bad == [], f"lock-runtime-{machine}.txt does not satisfy pyproject.toml"


def test_the_locks_differ_only_where_the_platforms_do() -> None:
    x86, arm = lock("x86_64"), lock("aarch64")
    assert {name: v for name, v in arm.items() if x86.get(name) != v} == {}
    assert set(x86) - set(arm) == {"intel-openmp", "intel-cmplr-lib-ur", "triton"}


@pytest.mark.parametrize("machine", MACHINES)
def test_the_lock_resolves_on_pypi_for_its_platform(machine: str, tmp_path: Path) -> None:
    lines = [line for line in lock_lines(machine) if "+" not in line]

    def check() -> None:
        found = resolve(machine, lines, tmp_path)
        assert sorted(pinned(lines) - found) == []

    cached_check(f"pypi-{machine}", lines, check)


@pytest.mark.parametrize("machine", MACHINES)
def test_the_locks_local_torch_build_resolves_through_the_override(machine: str, tmp_path: Path) -> None:
    """torch +cpu is on PyTorch's CPU wheel index only (TORCH_INDEX_URL), which this machine
    cannot reach; TORCH_FIND_LINKS is the override the test bed uses for it."""
    lines = [line for line in lock_lines(machine) if "+" in line]
    assert lines == [f"torch=={lock(machine)['torch']}"] and lock(machine)["torch"].endswith("+cpu")
    folder = os.environ.get("TORCH_FIND_LINKS", "")
    version = Version(lock(machine)["torch"])
    held = [p for p in Path(folder).glob("torch-*.whl") if folder and parse_wheel_filename(p.name)[1] == version
            and any(tag.platform in platforms(machine) for tag in parse_wheel_filename(p.name)[3])]
    if not held:
        pytest.skip(f"TORCH_FIND_LINKS={folder or '(unset)'} holds no torch {version} wheel for {machine}, and "
                    "PyTorch's CPU wheel index is not reachable from this machine")

    def check() -> None:
        found = resolve(machine, lines, tmp_path, "--no-index", "--find-links", folder)
        assert found == pinned(lines)

    cached_check(f"torch-{machine}", [*lines, held[0].name], check)


@pytest.mark.parametrize("machine", MACHINES)
def test_each_lock_is_the_x86_64_freeze_walked_for_its_machine(machine: str) -> None:
    """scripts/lock-arch.py over this venv (which holds the x86_64 lock) rebuilds each lock's set."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts/lock-arch.py"), machine], capture_output=True,
                          text=True, check=True)
    derived = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    assert sorted(derived, key=str.lower) == sorted(lock_lines(machine), key=str.lower)
