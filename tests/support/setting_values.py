"""Hypothesis strategies for the bundle's settings: values shaped like each setting's type
(so many environments do render a command), mixed with near misses and plain junk
(so many do not), and the check every refusal must pass."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from hypothesis import strategies as st
from pydantic import SecretStr

from entrypoint.default_layers import PLATFORMS, TEMPLATES_DIR, profile_names, variant_names
from entrypoint.engine_flags import FLAGS
from entrypoint.errors import SettingsError
from entrypoint.settings import Settings, setting_names

JUNK = st.sampled_from(["", " ", "x", "-1", "1e999", "nan", "2_0", "٣", "a\nb", "--port", "{", "[]"])
BOOLEANS = st.sampled_from(["true", "false", "True", "0", "1", "yes", "no", "on", "off"])
INTEGERS = st.integers(min_value=-2, max_value=70_000).map(str)
FLOATS = st.floats(min_value=-1, max_value=5000, allow_nan=False).map(lambda f: f"{f:g}")
NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
# JSON objects of the keys each flag's vLLM takes (the settings check only that it is an object).
COMPILATION_CONFIGS = st.sampled_from(['{"cudagraph_mode":"PIECEWISE"}', '{"cudagraph_mode":"FULL_AND_PIECEWISE"}',
                                       '{"cudagraph_mode":"FULL_DECODE_ONLY"}', "{}"])
ADDITIONAL_CONFIGS = st.sampled_from(["{}", '{"enable_cpu_binding":true}'])
# EXTRA_ARGS words: flags vLLM takes that the bundle leaves alone, and managed ones it refuses.
FREE_FLAGS = ["--long-prefill-token-threshold 8", "--enable-log-requests", "--kv-cache-dtype auto",
              "--max-logprobs 5", "--disable-log-stats", "--generation-config vllm", "-O3"]
MANAGED_FLAGS = ["--port 9", "--host=::1", "--max_model_len 64", "-tp 1", "--api-key k", "--max-num 4",
                 "--no-enable-prefix-caching", "--model /m", "--uds /s", "-cc.mode 0"]
EXTRA_ARGS = st.lists(st.sampled_from(FREE_FLAGS + MANAGED_FLAGS), max_size=3).map(" ".join)


def platform_variants() -> list[tuple[str, str]]:
    """Every platform with each of its variants, the platform file alone ("") first."""
    return [(p, v) for p in PLATFORMS for v in ["", *variant_names(TEMPLATES_DIR, p)]]


def shaped(annotation: Any) -> st.SearchStrategy[str]:
    """Text shaped like a value of this type."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is Literal:
        return st.sampled_from([str(a) for a in args])
    if get_origin(annotation) in (Union, types.UnionType):
        return st.one_of(*(shaped(a) for a in args))
    by_type = {bool: BOOLEANS, int: INTEGERS, float: FLOATS, Path: st.sampled_from(["/tmp/x", "rel", "/"]),
               SecretStr: NAMES}
    return by_type.get(annotation, NAMES)


SPECIAL: dict[str, st.SearchStrategy[str]] = {
    "HOST": st.sampled_from(["0.0.0.0", "127.0.0.1", "::1", "::", "localhost", "1.2.3"]),
    "MODEL_ID": st.sampled_from(["google/gemma-3-270m-it", "owner/name", "noslash"]),
    "PLATFORM_VARIANT": st.sampled_from(sorted({v for _, v in platform_variants()} | {"turbo"})),
    "MODEL_PROFILE": st.sampled_from(["", *profile_names(TEMPLATES_DIR), "nope"]),
    "COMPILATION_CONFIG": COMPILATION_CONFIGS,
    "ADDITIONAL_CONFIG": ADDITIONAL_CONFIGS,
    "EXTRA_ARGS": EXTRA_ARGS,
    "PLATFORM": st.sampled_from(["npu", "cuda", "cpu"]),
}


def value_of(name: str) -> st.SearchStrategy[str]:
    """Shaped values for one setting, one time in six junk."""
    field = next(f for f in Settings.model_fields.values() if f.alias == name)
    return st.one_of(*[SPECIAL.get(name, shaped(field.annotation))] * 5, JUNK)


def environments(names: list[str], min_size: int = 0, max_size: int = 5) -> st.SearchStrategy[dict[str, str]]:
    """Environments over these setting names, each value drawn for its setting."""
    return st.lists(st.sampled_from(names), min_size=min_size, max_size=max_size, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: value_of(key) for key in keys}))


ALL_SETTINGS = sorted(setting_names())
# The settings that shape the serve command's flags, and what chooses their defaults.
FLAG_SETTINGS = sorted({row.setting for row in FLAGS} | {"PLATFORM", "PLATFORM_VARIANT", "MODEL_PROFILE",
                                                          "EXTRA_ARGS", "CPU_TUNING"})


def assert_one_line_per_problem(error: SettingsError, known: set[str] | None = None) -> None:
    """Each line is one line, names a known variable first, and no line repeats."""
    known = known or setting_names() | {"MODEL_PROFILE"}
    assert error.lines, "a SettingsError without lines"
    for line in error.lines:
        assert "\n" not in line and "\r" not in line, line
        assert line.split("=", 1)[0] in known, line
    assert len(set(error.lines)) == len(error.lines), error.lines
