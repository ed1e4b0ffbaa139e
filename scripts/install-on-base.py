"""Install the bundle's libraries into a base image's Python without moving its serving stack.

    python3 install-on-base.py pyproject.toml [EXTRA ...]

The libraries are pyproject.toml's dependencies plus those of the optional groups named
(the image adds `verification`): the one list the wheel declares too.

Runs inside the accelerator stage's build, on the base image's own Python (vllm-ascend,
vllm-openai or a stand-in), standard library only:

1. The serving stack is every installed distribution named vllm* or torch* plus
   everything they require, transitively. It is pinned as installed in a constraints
   file, so pip resolves the bundle's libraries around it and can never up- or
   downgrade what vLLM needs. Base packages outside that closure (modelscope, which the
   vllm-ascend image adds unpinned) may move to the bundle's pin.
2. A bundle pin that contradicts the stack stops the build with one line before pip runs.
3. `pip check` after the install may report nothing the base did not already report
   (the vendor images carry known mismatches, e.g. torch-npu's torch pin).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from importlib.metadata import Distribution, distributions

STACK_ROOTS = ("vllm", "torch")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^]]*\])?\s*==\s*([^\s;#,]+)\s*(?:[;#].*)?$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, Distribution]:
    found: dict[str, Distribution] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist)
    return found


def required_names(dist: Distribution) -> list[str]:
    """Names this distribution requires, without the ones only its extras need."""
    names = []
    for line in dist.requires or []:
        requirement, _, marker = line.partition(";")
        if "extra" in marker:
            continue
        match = NAME.match(requirement)
        if match:
            names.append(canonical(match.group(1)))
    return names


def serving_stack(dists: dict[str, Distribution]) -> dict[str, str]:
    """name -> installed version for the roots and everything they require."""
    todo = [name for name in dists if name.startswith(STACK_ROOTS)]
    stack: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in stack or name not in dists:
            continue
        stack[name] = dists[name].version
        todo.extend(required_names(dists[name]))
    return stack


def contradictions(requirements: list[str], stack: dict[str, str]) -> list[str]:
    lines = []
    for line in requirements:
        match = PIN.match(line)
        if match and canonical(match.group(1)) in stack:
            name, version = canonical(match.group(1)), stack[canonical(match.group(1))]
            if match.group(2) != version:
                lines.append(f"{name}=={match.group(2)} (the base's vLLM stack has {name}=={version})")
    return lines


def load_toml(path: str) -> dict:
    """pyproject.toml as a dict; before Python 3.11 through the TOML parser pip itself carries."""
    try:
        import tomllib
    except ModuleNotFoundError:  # a base image on Python 3.10
        from pip._vendor import tomli as tomllib
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def project_requirements(pyproject: str, extras: list[str]) -> list[str]:
    """The project's dependencies and those of the named optional groups; an unknown group stops."""
    project = load_toml(pyproject)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"install-on-base: {pyproject} has no optional dependencies {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(optional))}")
    return [*project.get("dependencies", []), *(line for extra in extras for line in optional[extra])]


def pip(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if not env.get("PIP_INDEX_URL"):
        env.pop("PIP_INDEX_URL", None)  # an empty build arg means: the base's own index
    return subprocess.run([sys.executable, "-m", "pip", *args], env=env, capture_output=True, text=True)


def check_lines() -> set[str]:
    return {line for line in pip("check").stdout.splitlines() if line and "No broken requirements" not in line}


def main(pyproject: str, extras: list[str]) -> int:
    requirements = project_requirements(pyproject, extras)
    stack = serving_stack(installed())
    if not stack:
        print("install-on-base: no vllm* or torch* distribution in this Python; is BASE_IMAGE a vLLM image?",
              file=sys.stderr)
        return 1
    bad = contradictions(requirements, stack)
    if bad:
        print(f"install-on-base: {pyproject} pins against the base: {'; '.join(bad)}", file=sys.stderr)
        return 1
    before = check_lines()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints, \
            tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as wanted:
        constraints.write("".join(f"{name}=={version}\n" for name, version in sorted(stack.items())))
        wanted.write("".join(f"{line}\n" for line in requirements))
    print(f"install-on-base: {len(stack)} distributions of the serving stack pinned as installed", flush=True)
    done = pip("install", "--no-cache-dir", "-r", wanted.name, "-c", constraints.name)
    os.unlink(constraints.name)
    os.unlink(wanted.name)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        print("install-on-base: pip could not fit the bundle's libraries around the base's vLLM stack (above)",
              file=sys.stderr)
        return 1
    new = sorted(check_lines() - before)
    if new:
        print(f"install-on-base: the install broke requirements the base had met: {'; '.join(new)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} PYPROJECT_TOML [EXTRA ...]")
    sys.exit(main(sys.argv[1], sys.argv[2:]))
