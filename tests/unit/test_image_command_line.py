"""The image's command line as operators know it from vLLM's and docker-library's images:
`docker run IMAGE` serves, `docker run IMAGE bash -c ...` runs bash, and arguments starting
with `--` are engine flags appended to EXTRA_ARGS under its managed-flag rules. The CLI
holds it, so `python3 -m entrypoint` behaves the same (the image test: tests/container)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from entrypoint.cli import engine_environment, executable, parse_args
from tests.unit.test_image_build import ROOT


def entrypoint(*argv: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("EXTRA_ARGS", "PLATFORM")}
    return subprocess.run([sys.executable, "-m", "entrypoint", *argv], cwd=ROOT, env={**environ, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("argv", "command", "flags"), [
    ([], "serve", []),
    (["serve"], "serve", []),
    (["--max-logprobs", "5"], "serve", ["--max-logprobs", "5"]),
    (["--env-file", "x.env", "--max-logprobs=5"], "serve", ["--max-logprobs=5"]),
    (["serve", "--max-logprobs", "5"], "serve", ["--max-logprobs", "5"]),
    (["render", "--format", "json", "--max-logprobs", "5"], "render", ["--max-logprobs", "5"]),
])
def test_engine_flags_go_to_serve(argv, command, flags):
    args = parse_args(argv)
    assert (args.command, args.engine_flags) == (command, flags)
    assert executable(argv) is None


@pytest.mark.parametrize("argv", [["bash"], ["bash", "-c", "echo ok"], ["python3", "-m", "healthcheck", "ready"]])
def test_any_other_first_word_is_an_executable(argv):
    assert executable(argv) == argv


def test_the_flags_are_appended_to_extra_args_from_the_environment_or_the_env_file(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("EXTRA_ARGS=--max-logprobs 3\n")
    monkeypatch.delenv("EXTRA_ARGS", raising=False)
    args = parse_args(["--env-file", str(env_file), "--logprobs-mode", "raw logits"])
    assert engine_environment(args)["EXTRA_ARGS"] == "--max-logprobs 3 --logprobs-mode 'raw logits'"
    monkeypatch.setenv("EXTRA_ARGS", "--max-logprobs 4")
    assert engine_environment(args)["EXTRA_ARGS"] == "--max-logprobs 4 --logprobs-mode 'raw logits'"
    assert engine_environment(parse_args([])) is None


def test_an_executable_runs_in_place():
    done = entrypoint("bash", "-c", "echo ok")
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_a_first_word_that_is_neither_is_one_line_and_exit_2():
    done = entrypoint("rendr")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "'rendr'" in done.stderr


def test_render_shows_the_flags_appended():
    done = entrypoint("render", "--format", "json", "--max-logprobs", "5", PLATFORM="cpu")
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout)["argv"]
    assert argv[-2:] == ["--max-logprobs", "5"]


@pytest.mark.parametrize("flag", ["--port", "--host", "--model", "--api-key", "--nnodes"])
def test_a_managed_flag_as_an_argument_is_one_line_and_exit_2(flag):
    done = entrypoint(flag, "9", PLATFORM="cpu")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"'{flag}': " in done.stderr


@pytest.mark.parametrize(("words", "expected"), [
    (["--max-num-seqs", "8"], ["--max-num-seqs", "8"]),
    (["--max-num-seqs=8"], ["--max-num-seqs", "8"]),
    (["--max-num-s", "8"], ["--max-num-seqs", "8"]),
    (["--max-model-len", "2048", "--enforce-eager"], ["--max-model-len", "2048"]),
])
def test_a_flag_that_names_a_setting_sets_it(words, expected):
    """`docker run IMAGE --max-num-seqs 8` serves with 8: the argument outranks MAX_NUM_SEQS."""
    done = entrypoint("render", "--format", "json", *words, PLATFORM="cpu", MAX_NUM_SEQS="4")
    assert done.returncode == 0, done.stderr
    argv = json.loads(done.stdout)["argv"]
    assert " ".join(expected) in " ".join(argv) and argv.count(expected[0]) == 1
    assert ("--enforce-eager" in argv) == ("--enforce-eager" in words)


def test_a_bad_value_for_a_setting_flag_is_one_line_naming_the_setting():
    done = entrypoint("render", "--max-num-seqs", "many", PLATFORM="cpu")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "MAX_NUM_SEQS='many'" in done.stderr
