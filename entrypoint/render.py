"""Settings -> the serve command: argv and environment, rendered from Jinja templates.

`templates/serve/base.argv.j2` and `base.env.j2` hold the command (a platform's own
`<platform>.argv.j2` or `.env.j2` extends them where it differs); this
module only renders them, splits the words and appends EXTRA_ARGS last, so an extra
flag overrides a rendered one (argparse keeps the last occurrence).

Secrets (API_KEY) reach vLLM through its environment, never argv, which any user can
read in /proc/<pid>/cmdline and `ps`. `env` holds the real values for the child; the
printed forms (`to_shell`, `to_json`, the supervisor's log) show them as ***.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from entrypoint.default_layers import TEMPLATES_DIR
from entrypoint.settings import Settings, secret_values

MASK = "***"


@dataclass(frozen=True)
class ServeCommand:
    """What to run: argv and the variables to add to the environment."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    secrets: frozenset[str] = field(default=frozenset(), repr=False)  # values printed as ***

    def __repr__(self) -> str:
        return f"ServeCommand(argv={self.shown_argv()!r}, env={self.shown_env()!r})"

    def shown_env(self) -> dict[str, str]:
        """`env` as printed: secret values masked."""
        return {key: MASK if value in self.secrets else value for key, value in self.env.items()}

    def shown_argv(self) -> list[str]:
        """`argv` as printed: a secret passed as a word (EXTRA_ARGS) masked."""
        return [MASK if word in self.secrets else word for word in self.argv]

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


def _fraction(value: float) -> str:
    """0.9 -> "0.90": at least two decimals, as the seed writes it."""
    text = f"{value:.2f}"
    return text if float(text) == value else repr(value)


def _switch(value: bool | None, flag: str) -> str:
    """A vLLM boolean flag: --flag, --no-flag, or nothing when unset."""
    if value is None:
        return ""
    return f"--{flag}" if value else f"--no-{flag}"


def environment(templates_dir: Path) -> jinja2.Environment:
    """The Jinja environment with the bundle's filters; unknown names are errors, not blanks."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir / "serve"),
                             undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters.update(q=shlex.quote, fraction=_fraction, switch=_switch)
    return env


def parse_env_lines(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a rendered env template, blanks skipped."""
    pairs = (line.strip().split("=", 1) for line in text.splitlines() if line.strip())
    return {key: value for key, value in pairs}


def render_command(settings: Settings, model_path: str | Path, templates_dir: Path = TEMPLATES_DIR,
                   python: str = sys.executable) -> ServeCommand:
    """The serve command for these settings and this weights folder."""
    env = environment(templates_dir)
    context = {"s": settings, "model_path": str(model_path), "python": python}
    # A platform without its own template (<platform>.argv.j2) gets the base one.
    argv_text = env.select_template([f"{settings.platform}.argv.j2", "base.argv.j2"]).render(context)
    env_text = env.select_template([f"{settings.platform}.env.j2", "base.env.j2"]).render(context)
    return ServeCommand(argv=shlex.split(argv_text) + settings.extra_argv, env=parse_env_lines(env_text),
                        secrets=frozenset(secret_values(settings)))
