"""Parse rendered serve commands with one target vLLM's own code; print what it rejects.

Run with the target's overlay first on PYTHONPATH (scripts/testbed/target-vllm.sh), so `vllm`
is that version. Reads {"renders": [{"name", "argv", "env"}], "ascend_source": DIR} as
JSON on stdin and prints {"version", "failures": [{"render", "what", "message"}]}.
Nothing here starts an engine: the parser, EngineArgs and CompilationConfig are plain
Python, and vllm-ascend is read as source (its runtime needs torch_npu).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

# Launchers the templates render: everything before the first flag is replaced by --model.
SERVE_LAUNCHERS = (("vllm", "serve"), ("-m", "vllm.entrypoints.openai.api_server"))

# Variables the renders set that belong to neither vLLM nor vllm-ascend, with their owner.
OTHER_OWNERS = {
    "PYTORCH_NPU_ALLOC_CONF": "torch_npu's caching allocator (Ascend Extension for PyTorch docs)",
    "TASK_QUEUE_ENABLE": "torch_npu's task queue (Ascend Extension for PyTorch docs)",
    "HCCL_BUFFSIZE": "HCCL, CANN's collective library (CANN environment variable reference)",
    "HCCL_OP_EXPANSION_MODE": "HCCL, CANN's collective library (CANN environment variable reference)",
    "ASCEND_LOG_PATH": "the deployment guide's plog folder (its note 2)",
    "OMP_PROC_BIND": "OpenMP 5.x specification",
    "OMP_NUM_THREADS": "OpenMP 5.x specification",
    "HF_HOME": "huggingface_hub",
    "HF_HUB_OFFLINE": "huggingface_hub",
    "TRANSFORMERS_OFFLINE": "transformers",
    "MODELSCOPE_CACHE": "modelscope",
    "TORCHINDUCTOR_CACHE_DIR": "torch inductor",
    "BUNDLE_API_GUARD": "the bundle's API guard (entrypoint/api_guard.py), loaded by --middleware",
    "BUNDLE_API_KEY": "the bundle's API guard (entrypoint/api_guard.py), loaded by --middleware",
}


def serve_args(argv: list[str]) -> list[str]:
    """The flags after the launcher, with the weights folder as --model."""
    for launcher in SERVE_LAUNCHERS:
        for i in range(len(argv) - 1):
            if tuple(argv[i:i + 2]) == launcher:
                rest = argv[i + 2:]
                if launcher[0] == "vllm":  # `vllm serve PATH`: the positional model
                    return ["--model", rest[0], *rest[1:]]
                return rest
    raise ValueError(f"no known launcher in {argv[:4]}")


def ascend_names(source: Path) -> tuple[set[str], dict[str, set[str] | None]]:
    """vllm-ascend's environment variables and additional-config keys, from source: each
    top-level key with the keys its block takes (None where the block is not a class
    with named parameters)."""
    env_tree = ast.parse((source / "vllm_ascend" / "envs.py").read_text())
    env_names = {key.value for node in ast.walk(env_tree) if isinstance(node, ast.Dict)
                 for key in node.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)}
    config_tree = ast.parse((source / "vllm_ascend" / "ascend_config.py").read_text())
    keys = set()
    for node in ast.walk(config_tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and node.args and isinstance(node.args[0], ast.Constant)
                and _receiver_name(node.func.value) == "additional_config"):
            keys.add(node.args[0].value)
    blocks = {_snake(node.name): {a.arg for a in init.args.args[1:] + init.args.kwonlyargs}
              for node in ast.walk(config_tree) if isinstance(node, ast.ClassDef)
              for init in node.body if isinstance(init, ast.FunctionDef) and init.name == "__init__"}
    return env_names, {key: blocks.get(key) for key in keys}


def _snake(class_name: str) -> str:
    """AscendCompilationConfig -> ascend_compilation_config."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in class_name).lstrip("_")


def _receiver_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def check(render: dict[str, Any], parser: Any, vllm_env: set[str], ascend_env: set[str],
          ascend_keys: dict[str, set[str] | None]) -> list[dict[str, str]]:
    """Every problem the target has with one render."""
    from vllm.config import CompilationConfig
    from vllm.engine.arg_utils import AsyncEngineArgs

    name, failures = render["name"], []

    def fail(what: str, message: str) -> None:
        failures.append({"render": name, "what": what, "message": message})

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(serve_args(render["argv"]))
        AsyncEngineArgs.from_cli_args(args)
    except SystemExit:
        fail("argv", errors.getvalue().strip().splitlines()[-1] if errors.getvalue().strip() else "rejected")
        return failures
    except Exception as exc:
        fail("argv", f"{type(exc).__name__}: {exc}")
        return failures
    for middleware in args.middleware or []:
        problem = middleware_problem(middleware)
        if problem:
            fail("--middleware", problem)
    argv = render["argv"]
    if "--compilation-config" in argv:
        raw = json.loads(argv[argv.index("--compilation-config") + 1])
        try:
            CompilationConfig(**raw)
        except Exception as exc:
            fail("--compilation-config", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    if "--additional-config" in argv:
        raw = json.loads(argv[argv.index("--additional-config") + 1])
        for key in sorted(set(raw) - set(ascend_keys)):
            fail("--additional-config", f"key {key!r} is not read by vllm-ascend's AscendConfig "
                 f"(top-level keys: {', '.join(sorted(ascend_keys))})")
        for key, taken in ascend_keys.items():
            if isinstance(raw.get(key), dict) and taken is not None:
                for inner in sorted(set(raw[key]) - taken):
                    fail("--additional-config", f"key {key}.{inner!r} is not a parameter of vllm-ascend's "
                         f"{key} (it takes: {', '.join(sorted(taken))})")
    for variable in sorted(render["env"]):
        if variable not in vllm_env | ascend_env and variable not in OTHER_OWNERS:
            fail(variable, "not in vllm/envs.py, vllm_ascend/envs.py or the sourced list of CANN, torch_npu, "
                 "OpenMP and hub variables")
    return failures


def middleware_problem(path: str) -> str | None:
    """What vLLM's build_app would refuse in `--middleware path`: it imports it under this vLLM
    and adds a class with app.add_middleware, a coroutine function as an http middleware."""
    import importlib
    import inspect

    module_path, _, name = path.rpartition(".")
    try:
        imported = getattr(importlib.import_module(module_path), name)
    except Exception as exc:
        return f"{path} does not import: {type(exc).__name__}: {exc}"
    if not (inspect.isclass(imported) or inspect.iscoroutinefunction(imported)):
        return f"{path} is neither a class nor a coroutine function"
    return None


def main() -> int:
    request = json.load(sys.stdin)
    logging.disable(logging.WARNING)
    import vllm
    import vllm.envs
    from vllm.entrypoints.openai.cli_args import make_arg_parser
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    vllm_env = set(vllm.envs.environment_variables)
    ascend_env, ascend_keys = ascend_names(Path(request["ascend_source"]))
    failures = [f for render in request["renders"] for f in check(render, parser, vllm_env, ascend_env,
                                                                  ascend_keys)]
    json.dump({"version": vllm.__version__, "failures": failures}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
