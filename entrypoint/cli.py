"""Command line: `python -m entrypoint [serve|render|download|doctor|smoke|settings|watch]`.

Every command validates all settings first; a user mistake prints one line per
problem and exits 2, a failure exits 1, never with a traceback.

As the image's entrypoint it behaves like the images operators know: no arguments serve;
arguments starting with `--` are vLLM engine flags for `serve` (also after `serve` or
`render`), appended to EXTRA_ARGS under its rules (a flag a setting manages exits 2 with
one line); any other first word that is not a command is an executable, run in place.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from entrypoint.doctor import HostTree, failures, report, run_checks
from entrypoint.engine_flags import settings_from_flags
from entrypoint.env_file import read_env_file
from entrypoint.errors import ERROR_PREFIX, SettingsError, UserError, run_cli
from entrypoint.pipes import ClosedPipeSafe
from entrypoint.resolver import Resolved, load
from entrypoint.scrub import install_log_filter
from entrypoint.settings import Settings

log = logging.getLogger("entrypoint")
# Each command imports the modules only it needs inside its own branch (none of them imports
# this one): `render` or `settings` starts without loading the supervisor, the hub client or
# the docs generator.
COMMANDS = ("serve", "render", "download", "doctor", "smoke", "settings", "watch")
# The commands that take vLLM engine flags after their own options.
ENGINE_FLAG_COMMANDS = ("serve", "render")


def first_word(argv: list[str]) -> int | None:
    """The index of the first argument that is neither an option of ours nor its value."""
    index = 0
    while index < len(argv):
        if argv[index] == "--env-file":
            index += 2
        elif argv[index].startswith("--env-file=") or argv[index] in ("-h", "--help"):
            index += 1
        else:
            return index
    return None


def with_engine_flags(argv: list[str]) -> list[str]:
    """`serve` put in front of engine flags given without a command (`docker run IMAGE --flag ...`)."""
    index = first_word(argv)
    if index is not None and argv[index].startswith("-"):
        return [*argv[:index], "serve", *argv[index:]]
    return argv


def executable(argv: list[str]) -> list[str] | None:
    """The command line to run in place of the entrypoint (`docker run IMAGE bash`), or None."""
    index = first_word(argv)
    if index == 0 and argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return argv
    return None


def exec_in_place(argv: list[str]) -> None:
    """Replace this process with `argv` (tini stays PID 1 and passes signals to it)."""
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise SettingsError([f"{argv[0]!r}: neither a command ({', '.join(COMMANDS)}) nor an executable "
                             f"this image runs ({exc.strerror})"]) from None


def engine_environment(args: argparse.Namespace) -> dict[str, str] | None:
    """The environment with the engine flags applied, or None when none were given: a flag that
    names a setting sets it (`--max-num-seqs 8` is MAX_NUM_SEQS=8); the others are appended to
    EXTRA_ARGS (the .env file's, when the environment has none) under its managed-flag rules."""
    if not getattr(args, "engine_flags", None):
        return None
    settings, rest = settings_from_flags(args.engine_flags)
    environ = {**os.environ, **settings}  # an argument outranks the environment, as in vLLM's image
    extra = environ.get("EXTRA_ARGS", "").strip() or read_env_file(args.env_file).get("EXTRA_ARGS", "").strip()
    environ["EXTRA_ARGS"] = " ".join(part for part in (extra, shlex.join(rest)) if part)
    return environ


class OneLineParser(argparse.ArgumentParser):
    """argparse whose mistakes are one `error:` line and exit 2, as every other bad input (`--help` shows usage)."""

    def error(self, message: str) -> NoReturn:
        print(f"{ERROR_PREFIX}{self.prog}: {message} (--help lists the options)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The sub-command and its options; `serve` when none is given; engine flags in `engine_flags`."""
    parser = OneLineParser(prog="entrypoint", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", type=Path, help="a .env file under the process environment")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="fetch weights, start vLLM, smoke-check it, keep it running (default)")
    render = commands.add_parser("render", help="print the serve command (shell or JSON)")
    render.add_argument("--format", choices=("shell", "json"), default="shell")
    render.add_argument("--model-path", help="weights folder to show (default: where the cache would hold it)")
    commands.add_parser("download", help="fetch the weights into MODEL_CACHE_DIR and exit")
    doctor = commands.add_parser("doctor", help="check the host for the platform's known failure classes")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor.add_argument("--root", type=Path, default=Path("/"), help="the host's root folder (default: /); "
                        "nothing is written with it, and its binaries run only with --run-tools")
    doctor.add_argument("--run-tools", action="store_true", help="run npu-smi / nvidia-smi from the --root tree")
    watch = commands.add_parser("watch", help="show a start's phase, time in it and download progress until ready")
    watch.add_argument("--pid", type=int, help="stop when this process (the supervisor) is gone")
    watch.add_argument("--timeout", type=float, help="seconds to wait (default: STARTUP_TIMEOUT)")
    watch.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    smoke = commands.add_parser("smoke", help="run the guide's smoke checks against a running server")
    smoke.add_argument("--url", help="server base URL (default: from HOST and PORT)")
    smoke.add_argument("--json", action="store_true", help="print the result as JSON")
    table = commands.add_parser("settings", help="print the effective settings, or the settings reference table")
    table.add_argument("--explain", action="store_true", help="each value with where it came from")
    table.add_argument("--markdown", action="store_true", help="the settings table of docs/configuration.md")
    table.add_argument("--env-example", action="store_true", help="compose/.env.example")
    table.add_argument("--configmap-env", action="store_true",
                       help="deploy/kubernetes/base/settings.env (the Kubernetes ConfigMap)")
    args, unknown = parser.parse_known_args(with_engine_flags(argv))
    args.command = args.command or "serve"
    if unknown and (args.command not in ENGINE_FLAG_COMMANDS or not unknown[0].startswith("--")):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.engine_flags = unknown
    return args


def settings_for(args: argparse.Namespace, environ: Mapping[str, str] | None, preflight: bool = False) -> Resolved:
    """Resolve the settings; with `preflight`, also check ports and folders; all errors at once."""
    resolved = load(environ, env_file=args.env_file)
    if preflight:
        from entrypoint.preflight import preflight_errors

        errors = preflight_errors(resolved.settings, check_port=args.command == "serve")
        if errors:
            raise SettingsError(errors)
    return resolved


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Dispatch one command; return its exit status."""
    if args.command == "settings" and args.markdown:
        from entrypoint.settings_docs import markdown_table

        print(markdown_table())
        return 0
    if args.command == "settings" and args.env_example:
        from entrypoint.settings_docs import env_example

        print(env_example(), end="")
        return 0
    if args.command == "settings" and args.configmap_env:
        from entrypoint.settings_docs import configmap_env

        print(configmap_env(), end="")
        return 0
    resolved = settings_for(args, environ, preflight=args.command in ("serve", "download"))
    settings = resolved.settings
    for line in resolved.warnings:
        log.warning(line)
    if args.command in ("serve", "render", "settings"):  # the commands that show or use the serve command
        # On CPU, which defaults the machine chose and why (stderr: stdout stays parseable).
        for line in resolved.tuning_lines():
            log.info(line)
    if args.command == "settings" and args.explain:
        print("\n".join(resolved.explain()))
        return 0
    if args.command == "settings":
        print(json.dumps(settings.public_dict(), indent=2, sort_keys=True))
        return 0
    if args.command == "render":
        return _render(settings, args)
    if args.command == "download":
        from entrypoint.weights import ensure_weights

        print(ensure_weights(settings).path)
        return 0
    if args.command == "smoke":
        return _smoke(settings, args)
    if args.command == "doctor":
        return _doctor(settings, args, environ)
    if args.command == "watch":
        return _watch(settings, args)
    _doctor_gate(settings, environ)
    from entrypoint.supervisor import serve

    return serve(settings)


def _doctor_host(environ: Mapping[str, str] | None, root: Path = Path("/"), run_tools: bool | None = None) -> HostTree:
    # The CLI edge hands the process environment to the checks (visible devices, HCCL_*).
    return HostTree(root=root, environ=os.environ if environ is None else environ, run_tools=run_tools)


def _doctor(settings: Settings, args: argparse.Namespace, environ: Mapping[str, str] | None) -> int:
    findings = run_checks(settings, _doctor_host(environ, args.root, True if args.run_tools else None))
    print(report(findings, args.json))
    return 2 if failures(findings) else 0


def _doctor_gate(settings: Settings, environ: Mapping[str, str] | None) -> None:
    """Before `serve` spawns vLLM: a FAIL stops it (exit 2, one line each), a WARN is logged."""
    findings = run_checks(settings, _doctor_host(environ))
    for finding in findings:
        if finding.status == "WARN":
            log.warning("doctor: %s", finding.line())
    if failures(findings):
        raise SettingsError([f"doctor: {f.line()}" for f in failures(findings)])


WATCH_TIMEOUT_MAX = 7 * 86400


def _watch(settings: Settings, args: argparse.Namespace) -> int:
    from entrypoint.state import StateDir
    from entrypoint.watch import Watcher

    if args.timeout is not None and not 0 < args.timeout <= WATCH_TIMEOUT_MAX:  # nan and inf fail here too
        raise SettingsError([f"watch --timeout={args.timeout:g}: allowed: seconds > 0 and <= {WATCH_TIMEOUT_MAX}"])
    if args.pid is not None and not 0 < args.pid < 2**22:  # Linux's pid_max ceiling
        raise SettingsError([f"watch --pid={args.pid}: allowed: the supervisor's process id (a number > 0)"])
    watcher = Watcher(StateDir(settings.state_dir), sys.stdout, live=sys.stdout.isatty() and not args.plain,
                      cache=settings.model_cache_dir)
    return watcher.run(args.timeout or settings.startup_timeout, args.pid)


def _render(settings: Settings, args: argparse.Namespace) -> int:
    from entrypoint.render import render_command
    from entrypoint.weights import local_model_path

    command = render_command(settings, args.model_path or local_model_path(settings))
    print(command.to_json() if args.format == "json" else command.to_shell())
    return 0


def _smoke(settings: Settings, args: argparse.Namespace) -> int:
    from entrypoint.http import bearer
    from entrypoint.smoke import run_smoke, smoke_expectation
    from entrypoint.state import StateDir

    url = (args.url or settings.base_url).rstrip("/")
    # The supervisor of this server, if it runs here, says whether it serves fallback weights.
    state = StateDir(settings.state_dir).state() or {}
    fallback = bool(state.get("fallback")) and state.get("url") == url
    result = run_smoke(url, settings.served_model_name, settings.smoke_prompt,
                       smoke_expectation(settings.smoke_expect, fallback), settings.smoke_max_tokens,
                       settings.request_timeout, bearer(settings.api_key))
    print(result.to_json() if args.json else result.verdict)
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m entrypoint`."""
    logging.basicConfig(level=logging.INFO, format="[entrypoint] %(message)s", stream=sys.stderr)
    install_log_filter()
    sys.stdout = ClosedPipeSafe(sys.stdout)  # type: ignore[assignment]
    argv = sys.argv[1:] if argv is None else argv
    command = executable(argv)
    if command is not None:
        return run_cli(lambda: _exec(command))
    args = parse_args(argv)
    environ = engine_environment(args)
    if args.command == "serve":
        from entrypoint.hold import serve_or_hold

        return run_cli(lambda: serve_or_hold(lambda: run(args, environ), environ))
    return run_cli(lambda: run(args, environ))


def _exec(command: list[str]) -> int:
    exec_in_place(command)
    raise UserError("unreachable: exec returned")  # os.execvp returns only by raising
