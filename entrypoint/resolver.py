"""The one owner of every default: environment, env file, host facts and the templates
folder's layers in; validated settings and where each value came from out.

Layers, lowest precedence first:

1. built-in defaults (the `Settings` field defaults: the guide's values),
2. the platform's file (``templates/platforms/<platform>.yaml``), then on NPU and CUDA the
   image version's layer (IMAGE_VERSION, ``templates/images.yaml``),
3. the platform variant named by PLATFORM_VARIANT (``templates/platforms/<platform>/<variant>.yaml``),
4. on the CPU, the machine's tuning (``cpu_tuning``; CPU_TUNING=off skips it),
5. the model profile, then its per-platform part (``templates/models/<profile>.yaml``),
6. an env file given with ``--env-file``,
7. the process environment.

The selectors (PLATFORM, PLATFORM_VARIANT, IMAGE_VERSION, MODEL_PROFILE: the fields declared
with `selector`) are read raw first, since they pick the layers; their fields echo what was
picked. CPU_TUNING is read, like every derivation, from validated settings.

What no layer sets is derived here and nowhere else: PLATFORM=auto becomes the detected
platform, MODEL_PROFILE the profile serving MODEL_ID, SERVED_MODEL_NAME the model's name,
COMPILE_CACHE_DIR a folder on MODEL_CACHE_DIR. `resolve` is pure; `load`, the one way to
build a ``Settings``, reads the environment, the env file and the host once and passes them in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from entrypoint import cpu_features, cpu_tuning, default_layers, rules, scrub
from entrypoint.cpu_features import HostFacts
from entrypoint.env_file import read_env_file
from entrypoint.errors import SettingsError
from entrypoint.near_miss import near_misses
from entrypoint.platform_detect import detect_platform
from entrypoint.secret_files import fill_secrets
from entrypoint.settings import FIELDS, SECRET_FIELDS, SELECTORS, URL_FIELDS, Settings, error_line, setting_names
from entrypoint.value_grammar import env_text

BUILT_IN = "built-in default"
USER = "user"
ENV_FILE = "env file"
CPU_TUNING = "cpu tuning"
COMPILE_CACHE_SUBDIR = "vllm"  # vLLM's compile cache on the weights volume, so restarts are warm
# MODEL_CACHE_DIR in the image, where Compose and Kubernetes mount the cache volume: `make docs`
# writes it into the Dockerfile, compose/compose.yaml and the Kubernetes deployment.
CONTAINER_CACHE_DIR = Path("/models")
# Why a replica behind the router caches prefixes, per platform (docs/scaling.md, "Which router policy").
ROUTED_PREFIX_CACHING = {
    "cpu": "derived from BEHIND_ROUTER: behind cache_aware routing, measured faster on chats that share a "
           "system prompt and on multi-turn chats, no slower on random prompts (docs/scaling.md)",
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


@dataclass(frozen=True)
class Selection:
    """What the selectors picked, read raw before any layer exists (they choose the layers)."""

    platform: str
    profile: str
    image: str
    variant: str
    errors: tuple[str, ...]
    auto: bool  # PLATFORM=auto: the platform is the host's

    @classmethod
    def of(cls, user: Mapping[str, str], host: Machine, templates_dir: Path) -> Selection:
        chosen = {name: str(user.get(name, default_of(name))).strip() for name in SELECTORS}
        auto = chosen["PLATFORM"].lower() == "auto"
        profile, errors = default_layers.find_profile(templates_dir, chosen["MODEL_PROFILE"],
                                                      user.get("MODEL_ID", str(default_of("MODEL_ID"))))
        return cls(platform=host.platform if auto else chosen["PLATFORM"].lower(), profile=profile,
                   image=chosen["IMAGE_VERSION"], variant=chosen["PLATFORM_VARIANT"], errors=tuple(errors),
                   auto=auto)

    def echoed(self, from_env: Mapping[str, str], user: Mapping[str, str]) -> list[tuple[dict[str, str], str]]:
        """The selectors' fields as picked, with their origin: a detected platform, a found profile."""
        echo = []
        if self.auto:
            echo.append(({"PLATFORM": self.platform}, "detected (PLATFORM=auto)"))
        elif self.platform in default_layers.PLATFORMS:  # " NPU" -> "npu", from where it was given
            echo.append(({"PLATFORM": self.platform}, USER if "PLATFORM" in from_env else ENV_FILE))
        if "MODEL_PROFILE" not in user:
            found = self.profile != default_layers.GENERIC_PROFILE
            echo.append(({"MODEL_PROFILE": self.profile}, "the profile serving MODEL_ID" if found else BUILT_IN))
        return echo


def default_of(name: str) -> Any:
    return Settings.model_fields[FIELDS[name]].default


Layer = tuple[Mapping[str, Any], str]  # values by variable name, and where they came from


def lower_layers(picked: Selection, templates_dir: Path) -> tuple[list[Layer], list[str]]:
    """The platform's file, the image's layer and the variant the selectors picked (none for an unknown platform)."""
    if picked.platform not in default_layers.PLATFORMS:
        return [], list(picked.errors)  # the PLATFORM field refuses it
    image, image_errors = default_layers.image_settings(templates_dir, picked.platform, picked.image)
    variant, variant_errors = default_layers.variant_settings(templates_dir, picked.platform, picked.variant)
    layers = [(default_layers.platform_settings(templates_dir, picked.platform), f"platform {picked.platform}"),
              (image, f"image {picked.image}"), (variant, f"variant {picked.variant}")]
    return layers, [*picked.errors, *image_errors, *variant_errors]


def validated(layers: list[Layer], errors: list[str]) -> tuple[Settings, dict[str, str]]:
    """The layers merged (later wins) and validated, with each value's origin; SettingsError otherwise."""
    stack = Stack()
    for values, source in layers:
        stack.push(values, source)
    try:
        return Settings.model_validate(stack.values), stack.sources
    except ValidationError as exc:
        raise SettingsError(errors + [error_line(e) for e in exc.errors()]) from None


def resolve(environ: Mapping[str, str], env_file: Mapping[str, str], host: Machine,
            templates_dir: Path = default_layers.TEMPLATES_DIR) -> Resolved:
    """Every layer merged and validated; SettingsError lists every problem found."""
    from_file, from_env = known_values(env_file), known_values(environ)
    user = {**from_file, **from_env}
    remember_secrets(user)
    picked = Selection.of(user, host, templates_dir)
    lower, errors = lower_layers(picked, templates_dir)
    from_profile = default_layers.profile_settings(templates_dir, picked.profile, picked.platform)
    upper = [(from_profile, f"model profile {picked.profile}"), (from_file, ENV_FILE), (from_env, USER),
             *picked.echoed(from_env, user)]
    # The CPU tuning is a layer between the variant and the profile, chosen from the validated
    # settings of every other layer, as the derivations below are.
    untuned, _ = validated([*lower, *upper], errors)
    choices = cpu_tuning.choose(host.cpu, untuned) if cpu_tuning.applies(untuned) else []
    tuned = {c.setting: c.value for c in cpu_tuning.applicable(choices, {**from_profile, **user})}
    settings, sources = validated([*lower, (tuned, CPU_TUNING), *upper], errors)
    settings, derived = derive(settings, sources)
    settings, secret_errors = fill_secrets(settings, sources)
    errors += secret_errors + rules.errors(settings)
    if errors:
        raise SettingsError(errors)
    typos = near_misses([*env_file, *environ], setting_names())
    return Resolved(settings, {**sources, **derived}, tuple(choices), tuple(typos))


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


def load(environ: Mapping[str, str] | None = None, env_file: Path | None = None,
         templates_dir: Path | None = None, host: Machine | None = None) -> Resolved:
    """The one way to build the settings: the process environment (unless `environ` is given),
    the env file and the live host (unless given) read once, here, then `resolve`d."""
    return resolve(os.environ if environ is None else environ, read_env_file(env_file),
                   host or read_host(), templates_dir or default_layers.TEMPLATES_DIR)


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = None,
                  templates_dir: Path | None = None, host: Machine | None = None) -> Settings:
    """`load`'s settings alone; SettingsError lists every problem found."""
    return load(environ, env_file, templates_dir, host).settings
