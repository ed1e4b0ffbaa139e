"""Settings -> the serve command: argv and environment.

The flags and the exported variables are what the Settings fields declare (`engine_flags`
builds the argv, `exports` the environment); the templates hold only what is text around
them: `templates/serve/base.argv.j2` the launcher (`vllm serve PATH`), `base.env.j2` the
cache folders on MODEL_CACHE_DIR, and a platform's own `<platform>.argv.j2` or `.env.j2`
extends them where it differs (the API server module on CPU). EXTRA_ARGS is appended last;
it may not set a flag the bundle manages (settings refuse that).

With an API key or admission control, the bundle's guard (entrypoint/api_guard.py) goes
in through vLLM's `--middleware` hook; its configuration and an inline key reach it in
vLLM's environment. Secrets (API_KEY) never go in argv, which any user can read in
/proc/<pid>/cmdline and `ps`. `env` holds the real values for the child; the
printed forms (`to_shell`, `to_json`, the supervisor's log) mask them by position: the
value of a secret-bearing variable or flag, never another word that happens to be equal.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from entrypoint.api_guard import GUARD_ENV, KEY_ENV, TOKEN_ENV
from entrypoint.default_layers import TEMPLATES_DIR
from entrypoint.engine_flags import SECRET_FLAGS, managed_match, serve_flags
from entrypoint.settings import Settings, declared

MASK = "***"
GUARD_MIDDLEWARE = "entrypoint.api_guard.ApiGuard"
# Variables whose value is a secret: the guard's key and token are rendered or added by the
# supervisor; the others are masked too should a template or a caller's env ever carry them.
SECRET_ENV = frozenset({KEY_ENV, TOKEN_ENV, "VLLM_API_KEY", "MODELSCOPE_API_TOKEN", "HF_TOKEN",
                        "HUGGING_FACE_HUB_TOKEN"})


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """`env` as printed: the values of secret-bearing variables masked."""
    return {key: MASK if key in SECRET_ENV else value for key, value in env.items()}


def masked_argv(argv: list[str]) -> list[str]:
    """`argv` as printed: the values of secret-bearing flags masked (`--api-key K`, `--api-key=K`;
    --api-key takes several keys), every other word as it is."""
    shown: list[str] = []
    masking = False
    for word in argv:
        secret = managed_match(word, SECRET_FLAGS)
        if secret and "=" in word:
            shown.append(f"{word.split('=', 1)[0]}={MASK}")
            masking = False
        elif secret:
            shown.append(word)
            masking = True
        elif masking and not word.startswith("-"):
            shown.append(MASK)
        else:
            shown.append(word)
            masking = False
    return shown


@dataclass(frozen=True)
class ServeCommand:
    """What to run: argv and the variables to add to the environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ServeCommand(argv={self.shown_argv()!r}, env={self.shown_env()!r})"

    def shown_env(self) -> dict[str, str]:
        """`env` as printed: secret values masked."""
        return masked_env(self.env)

    def shown_argv(self) -> list[str]:
        """`argv` as printed: secret flag values masked."""
        return masked_argv(self.argv)

    def to_json(self) -> str:
        """The machine-readable form of `render --format json` (secrets masked)."""
        return json.dumps({"argv": self.shown_argv(), "env": self.shown_env()}, indent=2)

    def to_shell(self) -> str:
        """A command a person can paste: exports first, then one flag per line (secrets masked)."""
        exports = [f"export {key}={shlex.quote(value)}" for key, value in self.shown_env().items()]
        words = [shlex.quote(word) for word in self.shown_argv()]
        lines, current = [], words[:1]
        for word in words[1:]:
            if word.startswith("--"):
                lines.append(" ".join(current))
                current = [word]
            else:
                current.append(word)
        lines.append(" ".join(current))
        return "\n".join(exports + ([""] if exports else []) + [" \\\n  ".join(lines)])


def environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja environment with the bundle's filters; unknown names are errors, not blanks."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir / "serve"),
                             undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters.update(q=shlex.quote)
    return env


def parse_env_lines(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a rendered env template, blanks skipped."""
    pairs = (line.strip().split("=", 1) for line in text.splitlines() if line.strip())
    return {key: value for key, value in pairs}


def exports(settings: Settings) -> dict[str, str]:
    """The variables the fields declare exported, in the fields' order (the guide's); unset ones left out."""
    pairs: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        if (export := declared(info, "export")) is not None:
            pairs |= export.pairs(getattr(settings, name))
    return pairs


def render_command(settings: Settings, model_path: str | Path, templates_dir: Path = TEMPLATES_DIR,
                   python: str = sys.executable) -> ServeCommand:
    """The serve command for these settings and this weights folder."""
    env = environment(templates_dir)
    context = {"s": settings, "model_path": str(model_path), "python": python}
    # A platform without its own template (<platform>.argv.j2) gets the base one.
    launcher = shlex.split(env.select_template([f"{settings.platform}.argv.j2", "base.argv.j2"]).render(context))
    env_text = env.select_template([f"{settings.platform}.env.j2", "base.env.j2"]).render(context)
    guard_argv, guard_env = guard(settings)
    return ServeCommand(argv=launcher + serve_flags(settings) + guard_argv + settings.extra_argv,
                        env={**exports(settings), **parse_env_lines(env_text), **guard_env})


def guard(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The API guard's flag and environment: only with an API key or admission control, so the
    default render stays the guide's command."""
    if settings.api_key is None and not settings.admission_control:
        return [], {}
    config: dict[str, object] = {"key_file": str(settings.api_key_file) if settings.api_key_file else None,
                                 "metrics_need_key": settings.metrics_need_key, "admission": None}
    if settings.admission_control:
        config["admission"] = {"max_running": settings.admit_max_running, "max_queued": settings.admit_max_queued,
                               "queue_timeout": settings.admit_queue_timeout,
                               "max_per_key": settings.admit_max_per_key}
    env = {GUARD_ENV: json.dumps(config, separators=(",", ":"))}
    if settings.api_key is not None and settings.api_key_file is None:
        env[KEY_ENV] = settings.api_key.get_secret_value()  # a file's keys stay in the file, reread on change
    return ["--middleware", GUARD_MIDDLEWARE], env


def read_shell(text: str) -> tuple[dict[str, str], list[str]]:
    """The exports and the command of a shell form such as `to_shell` prints (or the guide's)."""
    env, command = {}, []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            key, value = words[1].split("=", 1)
            env[key] = value
        elif words:
            command = words
    return env, command
