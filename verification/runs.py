"""One evaluation run: its folder under the results folder, the facts it was measured on, its report files."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

from entrypoint.settings import Settings

DEFAULT_RESULTS = Path("perf_results")  # relative to the working directory, wherever the package is installed
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    """--results-dir: where the run folders go (the older spelling --results still works)."""
    parser.add_argument("--results-dir", "--results", dest="results", type=Path, default=DEFAULT_RESULTS, metavar="DIR",
                        help=f"folder for the run folders (default: ./{DEFAULT_RESULTS}, under the working directory)")


def new_run_dir(results: Path = DEFAULT_RESULTS, name: str | None = None, platform_name: str = "") -> Path:
    """A fresh folder for one run: <results>/<name> or <results>/<UTC time>-<platform>."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    # Absolute: the benchmarks' subprocesses run elsewhere and are handed paths inside it.
    folder = results.resolve() / (name or "-".join(part for part in (stamp, platform_name) if part))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def package_version(name: str) -> str:
    """Installed version of a distribution, trying the CPU build's name for vLLM."""
    for candidate in (name, f"{name}-cpu"):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def machine_facts(cpuinfo: Path = Path("/proc/cpuinfo"), meminfo: Path = Path("/proc/meminfo")) -> dict[str, Any]:
    """What the numbers depend on: CPU model, the flags that matter, cores, memory."""
    info = cpuinfo.read_text() if cpuinfo.exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    flag_set = set(flags.group(1).split()) if flags else set()
    mem = re.search(r"^MemTotal:\s*(\d+)", meminfo.read_text(), re.M) if meminfo.exists() else None
    return {"cpu": model.group(1).strip() if model else platform.processor(),
            "cores": len(os.sched_getaffinity(0)), "cpu_flags": [f for f in CPU_FLAGS if f in flag_set],
            "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
            "python": platform.python_version()}


def environment(settings: Settings, weights: str, dtype: str) -> dict[str, Any]:
    """The environment block every report starts with: platform, versions, hardware, weights, settings."""
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "platform": settings.platform,
            "weights": weights, "dtype": dtype,
            "versions": {name: package_version(name) for name in ("vllm", "torch", "transformers", "vllm-ascend")},
            "hardware": machine_facts(), "settings": settings.public_dict()}


def environment_markdown(env: dict[str, Any]) -> str:
    """The environment block as a Markdown list."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v != "not installed")
    hw = env["hardware"]
    return "\n".join([
        f"- date: {env['date']}; platform: {env['platform']}",
        f"- weights: `{env['weights']}`; dtype: {env['dtype']}",
        f"- versions: {versions}",
        f"- hardware: {hw['cpu']}, {hw['cores']} cores, flags {' '.join(hw['cpu_flags']) or 'none'}, "
        f"{hw['memory_gib']} GiB",
    ])


def write_report(run_dir: Path, stem: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """<run_dir>/<stem>.json and .md; returns both paths."""
    json_path, md_path = run_dir / f"{stem}.json", run_dir / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return json_path, md_path
