"""`python eval/accuracy_eval.py`: the guide's accuracy evaluation against a running server.

Writes <results dir>/<run>/accuracy.{json,md} (default ./perf_results). Exit status: 0 deterministic and float32
parity within 1 %, 1 a check failed or the server could not be used, 2 bad options or settings.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from entrypoint.engine_flags import kwargs_from_flags, server_only_options
from entrypoint.errors import UserError, run_cli
from entrypoint.resolver import load_settings
from entrypoint.settings import Settings
from verification import accuracy, accuracy_report, runs
from verification.client import ApiClient, client_from_settings

DTYPES = ("float32", "bfloat16", "float16")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="accuracy_eval.py", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="server base URL (default: from HOST and PORT)")
    parser.add_argument("--model-name", help="served model name (default: SERVED_MODEL_NAME)")
    parser.add_argument("--model", type=Path, help="weights folder for the parity reference "
                        "(default: the folder the server reports serving, if it exists here)")
    parser.add_argument("--server-dtype", choices=DTYPES, help="dtype the server at --url runs "
                        "(default: DTYPE, or the checkpoint's dtype when DTYPE is unset or auto)")
    parser.add_argument("--server", action="append", default=[], metavar="DTYPE=URL",
                        help="another server of the same weights in another dtype, for its logits (repeatable)")
    parser.add_argument("--parity-dtypes", default="float32,bfloat16", type=_dtypes,
                        help="dtypes the pooling runner measures hidden states in (default float32,bfloat16)")
    parser.add_argument("--skip-parity", action="store_true", help="only determinism and the task set")
    parser.add_argument("--rounds", type=_at_least(2), default=3, help="determinism rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="one task per category, two parity texts")
    parser.add_argument("--engine-args", default="", type=_engine_args, metavar="FLAGS",
                        help="more engine flags for the pooling runner, over the server's (shell words; the serve "
                        "flags the bundle renders, e.g. --enforce-eager or --max-model-len 2048; its dtype is "
                        "each of --parity-dtypes)")
    parser.add_argument("--run-name", help="run folder name (default: <UTC time>-<platform>)")
    runs.add_results_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the JSON report to stdout")
    args = parser.parse_args(argv)
    try:
        args.server = dict(_server(text) for text in args.server)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if args.model and not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json there; allowed: a weights folder")
    return args


def _dtypes(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    bad = [name for name in names if name not in DTYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: allowed: a comma list of {', '.join(DTYPES)}")
    return names


def _engine_args(text: str) -> dict[str, Any]:
    """Serve flags as the pooling runner's keyword arguments, read through the bundle's flag table."""
    allowed = "allowed: serve flags the bundle renders, e.g. --enforce-eager, --max-model-len 2048"
    try:
        words = shlex.split(text)
        kwargs = kwargs_from_flags(words)
    except IndexError:
        raise argparse.ArgumentTypeError(f"{text!r}: the last flag has no value; {allowed}") from None
    except ValidationError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error.errors()[0]['msg']}; {allowed}") from None
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}; {allowed}") from None
    for word in words:
        option = word.split("=", 1)[0]
        if option == "--dtype":
            raise argparse.ArgumentTypeError(f"{text!r}: the pooling runner runs each of --parity-dtypes; {allowed}")
        if option in server_only_options():
            raise argparse.ArgumentTypeError(f"{text!r}: {option} is the API server's, not the engine's; {allowed}")
    return kwargs


def _at_least(low: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"{text!r}: allowed: an integer >= {low}")
        return int(text)
    return parse


def _server(text: str) -> tuple[str, str]:
    dtype, _, url = text.partition("=")
    if dtype not in DTYPES or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"--server {text!r}: allowed: DTYPE=URL with DTYPE one of "
                                         f"{', '.join(DTYPES)}")
    return dtype, url


def checkpoint_dtype(model: Path | None) -> str | None:
    """The dtype the weights are stored in (what vLLM's `auto` picks)."""
    if model is None:
        return None
    config = json.loads((model / "config.json").read_text())
    return config.get("dtype") or config.get("torch_dtype")


def served_weights(client: ApiClient) -> Path | None:
    """The weights folder the server reports (`root` in /v1/models), if it exists on this machine."""
    for entry in client.models():
        if entry.get("id") == client.model and entry.get("root"):
            root = Path(entry["root"])
            return root if (root / "config.json").is_file() else None
    return None


def build_plan(args: argparse.Namespace, settings: Settings) -> tuple[accuracy.EvalPlan, str]:
    """Servers by dtype, weights, options; and the main server's dtype."""
    main = client_from_settings(settings, args.url, args.model_name)
    model = None if args.skip_parity else (args.model or served_weights(main))
    if not args.skip_parity and model is None:
        raise UserError("parity needs the weights: pass --model PATH (or --skip-parity)")
    dtype = args.server_dtype or (settings.dtype if settings.dtype not in (None, "auto") else None)
    dtype = dtype or checkpoint_dtype(model or args.model) or "auto"
    servers = {dtype: main}
    servers.update({d: ApiClient(url, main.model, main.api_key) for d, url in args.server.items() if d != dtype})
    plan = accuracy.EvalPlan(servers, model, args.rounds, [] if args.skip_parity else args.parity_dtypes, args.quick,
                             args.engine_args)
    return plan, dtype


def run(args: argparse.Namespace, settings: Settings) -> int:
    plan, dtype = build_plan(args, settings)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("accuracy eval", total=plan.step_count())
        data = accuracy.run(settings, plan, lambda label: progress.update(bar, advance=1, description=label))
    run_dir = runs.new_run_dir(args.results, args.run_name, settings.platform)
    env = runs.environment(settings, str(plan.model or "(as served)"), dtype)
    json_path, md_path = runs.write_report(run_dir, "accuracy", {"environment": env, **data},
                                           accuracy_report.markdown(env, data))
    if args.json:
        print(json_path.read_text(), end="")
    console.print(f"accuracy: {'PASS' if data['passed'] else 'FAIL'}; report: {md_path}")
    return 0 if data["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: run(args, load_settings()))
