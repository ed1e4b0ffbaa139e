"""The package as an operator's pip installs it: a wheel built from pyproject.toml, in a fresh
venv without vLLM, resolved by a pip that knows only the public index, run from a folder
outside the checkout. It carries the templates, declares every library it imports, and
its commands and probes answer.

The fresh venv (the wheel's dependencies from PyPI) is cached under BUNDLE_CACHE, keyed by
pyproject.toml: a rerun builds the wheel again and reinstalls only it (seconds).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from filelock import FileLock

from testbed.paths import BUNDLE_CACHE

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
PACKAGES = ["entrypoint", "healthcheck", "verification"]
# What a wheel build reads besides pyproject.toml: the folders it packages.
SOURCES = [*PACKAGES, "templates"]


def stranger_env(**extra: str) -> dict[str, str]:
    """This environment as a host that is not the test bed has it: pip with no configuration, no
    local wheel folder or constraints, and no checkout on the import path."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PIP_FIND_LINKS", "PIP_CONSTRAINT", "PYTHONPATH", "VIRTUAL_ENV", "TORCH_FIND_LINKS"}}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def pip(python: Path, *args: str, cwd: Path) -> None:
    done = subprocess.run([str(python), "-m", "pip", "--quiet", *args], cwd=cwd, env=stranger_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def build_wheel(python: Path, work: Path) -> Path:
    """The wheel, built from a copy of the sources (a build writes build/ and *.egg-info)."""
    src = work / "src"
    src.mkdir()
    shutil.copy2(PYPROJECT, src)
    for folder in SOURCES:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip(python, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(work / "dist"), ".", cwd=src)
    (wheel,) = (work / "dist").glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fresh venv's python, the wheel installed in it)."""
    key = hashlib.sha256(PYPROJECT.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = BUNDLE_CACHE / f"wheel-venv-{key}"
    python = venv / "bin" / "python"
    work = tmp_path_factory.mktemp("wheel")
    BUNDLE_CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=stranger_env())
            build_requires = tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]
            pip(python, "install", "--no-cache-dir", *build_requires, cwd=work)
            wheel = build_wheel(python, work)
            pip(python, "install", "--no-cache-dir", f"{wheel}[verification]", cwd=work)
            (venv / ".complete").touch()
            # Another checkout's pyproject may use the one before: keep two.
            kept = sorted((p for p in BUNDLE_CACHE.glob("wheel-venv-*") if p.is_dir()),
                          key=lambda p: p.stat().st_mtime, reverse=True)
            for old in kept[2:]:
                shutil.rmtree(old, ignore_errors=True)
        else:
            wheel = build_wheel(python, work)
            pip(python, "install", "--no-deps", "--force-reinstall", str(wheel), cwd=work)
        pip(python, "check", cwd=work)  # the declared dependencies are what the venv holds
    return python, wheel


@pytest.fixture
def outside(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder outside the checkout and an environment whose state and caches live in it."""
    env = stranger_env(HOME=str(tmp_path), STATE_DIR=str(tmp_path / "state"),
                       MODEL_CACHE_DIR=str(tmp_path / "models"), PLATFORM="cpu")
    return tmp_path, env


def run(argv: list[str], where: tuple[Path, dict[str, str]], **env: str) -> subprocess.CompletedProcess:
    cwd, base = where
    return subprocess.run(argv, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_the_wheel_carries_every_template(wheel_venv: tuple[Path, Path]) -> None:
    names = set(zipfile.ZipFile(wheel_venv[1]).namelist())
    templates = [p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*") if p.is_file()]
    assert templates and [t for t in templates if f"entrypoint/_templates/{t}" not in names] == []


def test_the_wheel_carries_the_bundles_packages_and_not_the_test_bed(wheel_venv: tuple[Path, Path]) -> None:
    # testbed/ (what the tests and benchmarks share) runs from the checkout only.
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel_venv[1]).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == set(PACKAGES)


def test_the_installed_package_is_the_one_imported(wheel_venv: tuple[Path, Path], outside) -> None:
    python = wheel_venv[0]
    done = run([str(python), "-c", "import entrypoint.default_layers as d, importlib.util as u; "
                "print(d.TEMPLATES_DIR); print(u.find_spec('vllm'))"], outside)
    templates, vllm = done.stdout.split()
    assert Path(templates).is_relative_to(python.parents[1]) and vllm == "None"


@pytest.mark.parametrize(("argv", "env"), [
    (["render"], {}),
    (["render", "--format", "json"], {"PLATFORM": "npu", "IMAGE_VERSION": "v0.18.0rc1"}),
    (["settings"], {}),
    (["doctor"], {}),
], ids=["render-cpu", "render-npu", "settings", "doctor"])
def test_the_entrypoint_command_answers_from_any_folder(wheel_venv, outside, argv, env) -> None:
    done = run([str(wheel_venv[0].parent / "entrypoint"), *argv], outside, **env)
    assert "Traceback" not in done.stderr
    # doctor exits 1 when a check fails on the machine it runs on; it still answers.
    assert done.returncode in ((0, 1) if argv == ["doctor"] else (0,)), done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize("probe", ["startup", "ready", "live"])
def test_the_probes_answer_in_one_line_without_a_server(wheel_venv, outside, probe) -> None:
    done = run([str(wheel_venv[0]), "-m", "healthcheck", probe], outside)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 and "FAIL" in done.stdout


def test_every_module_of_the_installed_packages_imports(wheel_venv, outside) -> None:
    # __main__ modules are the commands themselves (importing one runs it): the tests above run them.
    script = ("import importlib, pkgutil, sys\n"
              f"bad = []\nfor top in {PACKAGES!r}:\n"
              "    package = importlib.import_module(top)\n"
              "    for info in pkgutil.walk_packages(package.__path__, top + '.'):\n"
              "        if info.name.endswith('.__main__'):\n            continue\n"
              "        try:\n            importlib.import_module(info.name)\n"
              "        except Exception as error:\n            bad.append(f'{info.name}: {error!r}')\n"
              "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n")
    done = run([str(wheel_venv[0]), "-c", script], outside)
    assert done.returncode == 0, done.stdout + done.stderr
