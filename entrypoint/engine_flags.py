"""Settings -> vLLM engine arguments: the flags the Settings fields declare, read both ways.

Each flag-bearing field declares the `vllm serve` flag that carries it and the EngineArgs
field that flag fills (``setting(..., flag=EngineFlag(...))``); `FLAGS` is those
declarations in the fields' order, which is the guide's, so the NPU command is the guide's
flag for flag. The server's argv (`serve_flags`), the in-process engine's keyword arguments
(`engine_kwargs`: offline inference, the decode profile) and the reverse reading of a
rendered argv (`kwargs_from_flags`) all come from it, so the server and the in-process
engine cannot disagree.

The same table says which flags EXTRA_ARGS may not set (`managed_flag_errors`):
every flag a field renders, and the flags the supervisor, probes and smoke check rely
on (where vLLM listens, the model path, the API key).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from entrypoint.settings import Settings, declared
from entrypoint.vllm_forms import EngineFlag


def declared_flags(model: type[Settings] = Settings) -> tuple[EngineFlag, ...]:
    """The flags a settings model's fields declare, in the fields' order."""
    return tuple(flag for info in model.model_fields.values() if (flag := declared(info, "flag")) is not None)


FLAGS = declared_flags()

# Flags no setting renders that the bundle still owns: the supervisor, the probes and the
# smoke check reach vLLM over plain HTTP on HOST:PORT, by SERVED_MODEL_NAME, with API_KEY.
LISTEN = "the supervisor, probes and smoke check reach vLLM over plain HTTP on HOST:PORT; set those"
TLS = "the supervisor, probes and smoke check speak plain HTTP to vLLM; terminate TLS in front of it"
SUPERVISOR_FLAGS: dict[str, str] = {
    "--model": "the model path is managed by MODEL_ID and MODEL_SOURCE; set those instead",
    "--api-key": "a key on the command line is readable by every user of the host; set API_KEY_FILE instead",
    "--hf-token": "vLLM runs offline on weights fetched beforehand; for a private model set "
                  "MODELSCOPE_TOKEN_FILE instead",
    "--uds": f"{LISTEN} instead",
    "--headless": "the supervisor waits for vLLM's API server, which --headless does not start",
    "--config": "a config file can set flags the bundle manages; put its flags in EXTRA_ARGS or their settings",
    **{flag: TLS for flag in ("--ssl-keyfile", "--ssl-certfile", "--ssl-ca-certs", "--ssl-cert-reqs",
                              "--ssl-ciphers", "--enable-ssl-refresh", "--no-enable-ssl-refresh")},
}
# Flags whose value is a secret: printed as *** wherever a command is shown.
SECRET_FLAGS = ("--api-key", "--hf-token")


# Rows an image argument may not set: where vLLM listens (the probes and the published port
# depend on it) and a LeaderWorkerSet group's wiring (LWS sets those).
WIRED = frozenset({"HOST", "PORT", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX", "LWS_LEADER_ADDRESS", "MULTI_NODE_PORT"})


def settings_from_flags(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Image arguments (`docker run IMAGE --max-num-seqs 8`) split into the settings their flags
    name, as environment values, and the other words, which join EXTRA_ARGS under its rules.
    A flag is matched as vLLM's parser matches it (abbreviations, `=` values, `--no-` forms)."""
    by_option = {option: row for row in FLAGS if row.setting not in WIRED for option in row.options}
    settings: dict[str, str] = {}
    rest: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        option = managed_match(word, by_option)
        row = by_option.get(option) if option else None
        if row is None or "." in word.split("=", 1)[0]:  # `-cc.mode=3` stays a flag
            rest.append(word)
            index += 1
            continue
        if row.kind in ("switch", "present"):
            settings[row.setting] = "false" if option.startswith("--no-") else "true"
            index += 1
        elif "=" in word:
            settings[row.setting] = word.split("=", 1)[1]
            index += 1
        elif index + 1 < len(words):
            settings[row.setting] = words[index + 1]
            index += 2
        else:
            rest.append(word)  # a flag without its value: EXTRA_ARGS' rules name it
            index += 1
    return settings, rest


def rows(platform: str) -> list[EngineFlag]:
    """The table's rows that apply on this platform."""
    return [row for row in FLAGS if platform in row.platforms]


# A LeaderWorkerSet worker runs the engine only; its leader serves the API.
HEADLESS = "--headless"


def serve_flags(settings: Settings) -> list[str]:
    """The server's flags for these settings (the launcher and EXTRA_ARGS go around them)."""
    words = [word for row in rows(settings.platform) for word in row.words(getattr(settings, row.attribute))]
    return words + ([HEADLESS] if settings.node_role == "worker" else [])


def engine_kwargs(settings: Settings, model: str) -> dict[str, Any]:
    """EngineArgs / `vllm.LLM` keyword arguments equal to what the server's flags give vLLM."""
    kwargs: dict[str, Any] = {"model": model}
    for row in rows(settings.platform):
        value = row.kwarg(getattr(settings, row.attribute))
        if row.field is not None and value is not None:
            kwargs[row.field] = value
    return kwargs


def server_only_options() -> frozenset[str]:
    """Option strings the engine does not take (where the server listens, what it answers to)."""
    return frozenset({"--model", *SECRET_FLAGS,
                      *(option for row in FLAGS if row.field is None for option in row.options)})


def kwargs_from_flags(words: list[str]) -> dict[str, Any]:
    """The engine keyword arguments of rendered flags (the server's, minus the launcher):
    the table read backwards, each value validated as its setting validates it."""
    by_option = {option: row for row in FLAGS for option in row.options}
    kwargs: dict[str, Any] = {}
    index = 0
    while index < len(words):
        option, has_value, text = words[index].partition("=")
        if option == HEADLESS:  # the server's role, not the engine's arguments
            index += 1
            continue
        row = by_option.get(option)
        if row is None:
            raise ValueError(f"{words[index]!r} is not a flag the bundle renders")
        index += 1
        if row.kind in ("switch", "present"):
            value: Any = not option.startswith("--no-")
        else:
            if not has_value:
                text, index = words[index], index + 1
            value = TypeAdapter(Settings.model_fields[row.attribute].annotation).validate_python(text)
        if row.field is not None:
            kwargs[row.field] = row.kwarg(value)
    return kwargs


# --- EXTRA_ARGS may not set what the bundle manages ------------------------------------------

def managed_options() -> dict[str, str]:
    """Each managed option string -> why it is refused and what to set instead."""
    reasons = {option: f"managed by {row.setting}; set that instead" for row in FLAGS for option in row.options}
    return {**reasons, **SUPERVISOR_FLAGS}


def option_key(word: str) -> str:
    """The option a command-line word names, as vLLM's parser reads it: before any `=` value
    and any `.key` of a JSON flag, with underscores in a long option read as dashes."""
    key = word.split("=", 1)[0].split(".", 1)[0]
    return key.replace("_", "-") if key.startswith("--") else key


def managed_match(word: str, managed: Iterable[str]) -> str | None:
    """The managed option this word sets, resolved as argparse resolves it: exactly, as an
    abbreviation, or as a short option with its value attached (`-n2` is `-n 2`)."""
    if not word.startswith("-") or word in ("-", "--") or word[1:2].isdigit():
        return None
    key = option_key(word)
    options = sorted(managed)
    if key in options:
        return key
    abbreviated = next((option for option in options
                        if option.startswith(key) and option[:2].count("-") == key[:2].count("-")), None)
    if abbreviated or word.startswith("--"):
        return abbreviated
    return word[:2] if word[:2] in options else None


def managed_flag_errors(words: list[str]) -> list[str]:
    """One line per EXTRA_ARGS word that sets something the bundle manages (never quoting values)."""
    reasons = managed_options()
    errors: list[str] = []
    if words and (words[0] == "-" or not words[0].startswith("-")):
        # Not quoted: a stray first word may be a pasted key.
        errors.append("EXTRA_ARGS=(its first word): a positional argument is vLLM's model path, which is managed "
                      "by MODEL_ID and MODEL_SOURCE; set those instead (EXTRA_ARGS holds flags only)")
    for word in words:
        option = managed_match(word, reasons)
        if option is None:
            continue
        key = option_key(word)
        named = repr(key) if key == option else f"{key!r} (read by vLLM as {option})"
        line = f"EXTRA_ARGS={named}: {reasons[option]}"
        if line not in errors:
            errors.append(line)
    return errors
