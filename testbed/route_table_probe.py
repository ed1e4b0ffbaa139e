"""Ask one vLLM's own FastAPI app, built in-process without an engine, whether the API guard
covers every route it has: for each route of its route table, a request without a key and
one with the key, through the app's full middleware stack.

Run with the target's overlay first on PYTHONPATH (or the project venv's vLLM). Reads
{"argv": [...], "env": {...}, "key": KEY} on stdin (a render with the guard) and prints
{"version", "routes": [{"path", "method", "without_key", "with_key"}]}. vLLM registers the
routes of the tasks a model supports; every task of this vLLM is passed, so the table is
the largest it builds. No engine runs: a handler that needs one answers 500, which is not
a 401 and so still shows the key was accepted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from typing import Any, get_args

from target_vllm_probe import serve_args


def all_tasks() -> tuple[str, ...]:
    from vllm import tasks

    # A Literal of Literals: flattened by typing, or not, depending on how it was written.
    return tuple(task for group in get_args(tasks.SupportedTask)
                 for task in (get_args(group) or (group,)))


def route_table(app: Any) -> list[tuple[str, str]]:
    """(path, method) for every HTTP route and mount of the app; {params} filled with a word."""
    from starlette.routing import Mount, Route

    pairs = []
    for route in app.routes:
        if isinstance(route, Mount):
            pairs.append((route.path, "GET"))
        elif isinstance(route, Route):
            path = route.path
            while "{" in path:
                path = path[:path.index("{")] + "x" + path[path.index("}") + 1:]
            methods = sorted((route.methods or {"GET"}) - {"HEAD"}) or ["GET"]
            pairs += [(path, method) for method in methods]
    return sorted(set(pairs))


def main() -> int:
    request = json.load(sys.stdin)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    os.environ.update(request["env"])
    import vllm
    from fastapi.testclient import TestClient
    from vllm.entrypoints.openai.api_server import build_app
    try:
        from vllm.entrypoints.openai.cli_args import make_arg_parser
    except ImportError:  # 0.32 moved it
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser

    args = make_arg_parser(FlexibleArgumentParser()).parse_args(serve_args(request["argv"]))
    app = build_app(args, all_tasks())
    client = TestClient(app, raise_server_exceptions=False)  # no `with`: no lifespan, no engine
    key = {"Authorization": f"Bearer {request['key']}"}
    answers = []
    for path, method in route_table(app):
        statuses = [client.request(method, path, json={}, headers=headers, timeout=10).status_code
                    for headers in ({}, key)]
        answers.append({"path": path, "method": method, "without_key": statuses[0], "with_key": statuses[1]})
    json.dump({"version": vllm.__version__, "routes": answers}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
