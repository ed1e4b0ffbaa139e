"""The one owner of every default: environment, env file, host facts and the templates
folder's layers in; validated settings and where each value came from out.

Layers, lowest precedence first:

1. built-in defaults (the `Settings` field defaults: the seed's values),
2. the platform's file (``templates/platforms/<platform>.yaml``), then on NPU and CUDA the
   image version's layer (IMAGE_VERSION, ``templates/images.yaml``),
3. the platform variant named by PLATFORM_VARIANT (``templates/platforms/<platform>/<variant>.yaml``),
4. on the CPU, the machine's tuning (``cpu_tuning``; CPU_TUNING=off skips it),
5. the model profile, then its per-platform part (``templates/models/<profile>.yaml``),
6. an env file given with ``--env-file``,
7. the process environment.

What no layer sets is derived here and nowhere else: PLATFORM=auto becomes the detected
platform, MODEL_PROFILE the profile serving MODEL_ID, SERVED_MODEL_NAME the model's name,
COMPILE_CACHE_DIR a folder on MODEL_CACHE_DIR. `resolve` is pure: the caller reads the
host (`read_host`) and the files once, at the edge, and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from entrypoint import cpu_features, cpu_tuning, default_layers, images, scrub
from entrypoint.cpu_features import HostFacts
from entrypoint.errors import SettingsError
from entrypoint.near_miss import near_misses
from entrypoint.platform_detect import detect_platform
from entrypoint.settings import (
    SECRET_FIELDS,
    SECRET_FILES,
    URL_FIELDS,
    Settings,
    admission_errors,
    cross_field_errors,
    error_line,
    read_api_key_file,
    read_secret_file,
    setting_names,
)
from entrypoint.value_grammar import env_text

BUILT_IN = "built-in default"
USER = "user"
ENV_FILE = "env file"
CPU_TUNING = "cpu tuning"
COMPILE_CACHE_SUBDIR = "vllm"  # vLLM's compile cache on the weights volume, so restarts are warm
FIELDS = {str(f.alias): key for key, f in Settings.model_fields.items()}
# Why a replica behind the router caches prefixes, per platform (docs/scaling.md, "Which router policy").
ROUTED_PREFIX_CACHING = {
    "cpu": "derived from BEHIND_ROUTER: behind cache_aware routing, measured 2.5x the requests/s on chats "
           "sharing a system prompt and 1.5x on multi-turn chats at c=8, none lost on random prompts "
           "(bench/results/routing.md)",
    "npu": "derived from BEHIND_ROUTER: UNMEASURED on the NPU; vllm-ascend v0.18.0rc1 lists prefix caching "
           "functional, the guide's off is its tutorials' default (docs/scaling.md)",
    "cuda": "derived from BEHIND_ROUTER: UNMEASURED on CUDA; vLLM's own default (docs/scaling.md)",
}


@dataclass(frozen=True)
class Machine:
    """What the resolver needs to know about the machine."""

    platform: str  # the accelerator found: npu, cuda or cpu
    cpu: HostFacts


def read_host() -> Machine:
    """The live machine; called once, at the edge."""
    return Machine(platform=detect_platform(), cpu=cpu_features.read_host())


@dataclass(frozen=True)
class Resolved:
    """The validated settings, each value's origin, and the CPU tuning's choices with their reasons."""

    settings: Settings
    sources: dict[str, str]
    tuning: tuple[cpu_tuning.Choice, ...] = ()
    warnings: tuple[str, ...] = ()  # variables that look like a misspelt setting

    def source(self, name: str) -> str:
        """Where a variable's value came from."""
        return self.sources.get(name, BUILT_IN)

    def tuning_lines(self) -> list[str]:
        """The CPU tuning's reason lines (empty unless the tuning ran)."""
        return cpu_tuning.explain(list(self.tuning), self.settings.public_dict())

    def explain(self) -> list[str]:
        """One `NAME=value  # origin` line per setting (`NAME (unset)` for none), secrets masked."""
        values = self.settings.public_dict()
        rows = [(f"{name}={env_text(value)}" if value is not None else f"{name} (unset)", self.source(name))
                for name, value in values.items()]
        width = max(len(text) for text, _ in rows)
        return [f"{text.ljust(width)}  # {origin}" for text, origin in sorted(rows)]


@dataclass
class Stack:
    """Values by variable name and the layer each came from; later layers win."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def push(self, values: Mapping[str, Any], source: str) -> None:
        for name, value in values.items():
            self.values[name] = value
            self.sources[name] = source


def known_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings one mapping sets: known names with a non-empty value (`VAR=` keeps the default)."""
    names = setting_names()
    return {key: value for key, value in environ.items() if key in names and value.strip() != ""}


def platform_of(choice: str, host: Machine) -> str:
    """The platform whose defaults apply: the user's choice, or the host's for auto."""
    choice = choice.strip().lower()
    return host.platform if choice == "auto" else choice


def machine_choices(platform: str, host: Machine, above: dict[str, Any],
                    below: dict[str, Any]) -> list[cpu_tuning.Choice]:
    """On CPU with CPU_TUNING not off, every choice the machine makes (applied or not)."""
    if platform != "cpu" or str(above.get("CPU_TUNING", "auto")).strip().lower() == "off":
        return []
    return cpu_tuning.choose(host.cpu, {**below, **above})


def default_of(name: str) -> Any:
    return Settings.model_fields[FIELDS[name]].default


def resolve(environ: Mapping[str, str], env_file: Mapping[str, str], host: Machine,
            templates_dir: Path = default_layers.TEMPLATES_DIR) -> Resolved:
    """Every layer merged and validated; SettingsError lists every problem found."""
    from_file, from_env = known_values(env_file), known_values(environ)
    user = {**from_file, **from_env}
    remember_secrets(user)
    platform = platform_of(user.get("PLATFORM", str(default_of("PLATFORM"))), host)
    profile, errors = default_layers.find_profile(templates_dir, user.get("MODEL_PROFILE", "").strip(),
                                                  user.get("MODEL_ID", str(default_of("MODEL_ID"))))
    stack = Stack()
    if platform in default_layers.PLATFORMS:
        stack.push(default_layers.platform_settings(templates_dir, platform), f"platform {platform}")
        tag = user.get("IMAGE_VERSION", str(default_of("IMAGE_VERSION"))).strip()
        image_values, image_errors = images.image_layer(templates_dir, platform, tag)
        stack.push(image_values, f"image {tag}")
        errors += image_errors
        variant = user.get("PLATFORM_VARIANT", "").strip()
        variant_values, variant_errors = default_layers.variant_settings(templates_dir, platform, variant)
        stack.push(variant_values, f"variant {variant}")
        errors += variant_errors
    from_profile = default_layers.profile_settings(templates_dir, profile, platform)
    above = {**from_profile, **user}
    choices = machine_choices(platform, host, above, stack.values)
    stack.push({c.setting: c.value for c in cpu_tuning.applicable(choices, above)}, CPU_TUNING)
    stack.push(from_profile, f"model profile {profile}")
    stack.push(from_file, ENV_FILE)
    stack.push(from_env, USER)
    if user.get("PLATFORM", "auto").strip().lower() == "auto":
        stack.push({"PLATFORM": platform}, "detected (PLATFORM=auto)")
    elif platform in default_layers.PLATFORMS:
        stack.values["PLATFORM"] = platform  # " NPU" -> "npu"
    if "MODEL_PROFILE" not in user:
        stack.push({"MODEL_PROFILE": profile}, "the profile serving MODEL_ID" if profile != "generic" else BUILT_IN)
    try:
        settings = Settings.model_validate(stack.values)
    except ValidationError as exc:
        raise SettingsError(errors + [error_line(e) for e in exc.errors()]) from None
    settings, derived = derive(settings, stack.sources)
    settings, secret_errors = secrets_from_files(settings, stack.sources)
    errors += secret_errors + cross_field_errors(settings) + admission_errors(settings)
    if errors:
        raise SettingsError(errors)
    typos = near_misses([*env_file, *environ], setting_names())
    return Resolved(settings, {**stack.sources, **derived}, tuple(choices), tuple(typos))


def derive(settings: Settings, sources: Mapping[str, str]) -> tuple[Settings, dict[str, str]]:
    """The defaults computed from other settings, for the ones no layer set."""
    derived: dict[str, tuple[Any, str]] = {
        "SERVED_MODEL_NAME": (settings.model_id.rsplit("/", 1)[-1], "derived from MODEL_ID"),
        "COMPILE_CACHE_DIR": (settings.model_cache_dir / COMPILE_CACHE_SUBDIR, "derived from MODEL_CACHE_DIR"),
    }
    if settings.platform == "npu" and settings.cards_per_model > 1:
        # vllm-ascend's multi-card tutorials expand HCCL's collectives on the AI vector cores.
        derived["HCCL_OP_EXPANSION_MODE"] = ("AIV", "derived from TENSOR_PARALLEL_SIZE x PIPELINE_PARALLEL_SIZE x "
                                             "DATA_PARALLEL_SIZE")
    if settings.admission_control:
        # vLLM runs MAX_NUM_SEQS requests at once; more in flight only wait in its unbounded queue.
        derived["ADMIT_MAX_RUNNING"] = (settings.max_num_seqs, "derived from MAX_NUM_SEQS")
        derived["ADMIT_MAX_QUEUED"] = (settings.max_num_seqs, "derived from MAX_NUM_SEQS")
    if settings.behind_router:
        derived["ENABLE_PREFIX_CACHING"] = (True, ROUTED_PREFIX_CACHING.get(str(settings.platform), ""))
    if settings.lws_group_size is not None:
        # The group's nodes join through vLLM's own processes (--nnodes/--node-rank), not Ray.
        derived["DISTRIBUTED_EXECUTOR_BACKEND"] = ("mp", "derived from LWS_GROUP_SIZE")
    chosen = {name: pair for name, pair in derived.items() if name not in sources}
    update = {FIELDS[name]: value for name, (value, _) in chosen.items()}
    return settings.model_copy(update=update), {name: origin for name, (_, origin) in chosen.items()}


def remember_secrets(values: Mapping[str, str]) -> None:
    """Tell the scrubber every secret the user gave, before anything can print one (an error included)."""
    scrub.remember(*(values.get(name, "").strip() for name in SECRET_FIELDS))
    for name in URL_FIELDS:
        scrub.remember_url_credentials(values.get(name, "").strip())


def secrets_from_files(settings: Settings, sources: dict[str, str]) -> tuple[Settings, list[str]]:
    """Fill each secret from its VAR_FILE; both VAR and VAR_FILE set is an error."""
    updates: dict[str, SecretStr] = {}
    errors = []
    for file_name, name in SECRET_FILES.items():
        path = getattr(settings, FIELDS[file_name])
        if path is None:
            continue
        if getattr(settings, FIELDS[name]) is not None:
            errors.append(f"{file_name}={str(path)!r}: {name} is set too; allowed: one of them ({name} holds the "
                          f"value, {file_name} a file holding it)")
            continue
        if file_name == "API_KEY_FILE":  # several keys: clients of the bundle's own send the first
            keys, error = read_api_key_file(path)
            scrub.remember(*keys)
            value = keys[0] if keys else None
        else:
            value, error = read_secret_file(file_name, path)
        if error:
            errors.append(error)
        else:
            scrub.remember(str(value))
            updates[FIELDS[name]] = SecretStr(str(value))
            sources[name] = f"file {file_name}"
    return settings.model_copy(update=updates), errors
