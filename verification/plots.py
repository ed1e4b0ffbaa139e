"""PNG plots of a perf run: throughput and latency against concurrency, and the per-request latency spread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np


def _title(fig: Any, title: str, subtitle: str) -> None:
    fig.suptitle(f"{title}\n{subtitle}", fontsize=10)


def throughput_vs_concurrency(sweep: list[dict[str, Any]], path: Path, subtitle: str) -> Path:
    """Output and total tokens/s (left axis) and requests/s (right axis) per concurrency level."""
    levels = [row["load"]["concurrency"] for row in sweep]
    fig, left = plt.subplots(figsize=(7, 4.5))
    left.plot(levels, [row["output_throughput"] for row in sweep], "o-", label="output tokens/s")
    left.plot(levels, [row["total_token_throughput"] for row in sweep], "s-", label="total tokens/s")
    left.set_xscale("log", base=2)
    left.set_xticks(levels, [str(c) for c in levels])
    left.set_xlabel("concurrency (--max-concurrency)")
    left.set_ylabel("tokens/s")
    right = left.twinx()
    right.plot(levels, [row["request_throughput"] for row in sweep], "^--", color="tab:green", label="requests/s")
    right.set_ylabel("requests/s")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="upper left")
    left.grid(True, alpha=0.3)
    _title(fig, "Throughput vs concurrency (vllm bench serve)", subtitle)
    return _save(fig, path)


def latency_vs_concurrency(sweep: list[dict[str, Any]], path: Path, subtitle: str) -> Path:
    """Mean and p99 TTFT, TPOT and E2E latency per concurrency level, one panel each (their scales differ)."""
    levels = [row["load"]["concurrency"] for row in sweep]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for axis, (metric, label) in zip(axes, (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2el", "E2E latency")),
                                     strict=True):
        axis.plot(levels, [row.get(f"mean_{metric}_ms") for row in sweep], "o-", label="mean")
        axis.plot(levels, [row.get(f"p99_{metric}_ms") for row in sweep], "s--", label="p99")
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.set_xlabel("concurrency")
        axis.set_ylabel("ms")
        axis.set_title(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    _title(fig, "Latency vs concurrency (vllm bench serve)", subtitle)
    return _save(fig, path)


def latency_distribution(series: dict[str, list[float]], path: Path, subtitle: str) -> Path:
    """Empirical CDF of per-request E2E latency (ms), one line per workload or concurrency level."""
    fig, axis = plt.subplots(figsize=(7, 4.5))
    for label, values in series.items():
        if not values:
            continue
        ordered = np.sort(np.asarray(values, dtype=float))
        fractions = np.arange(len(ordered) + 1) / len(ordered)  # from 0 at the fastest request to 1
        axis.step(np.concatenate([ordered[:1], ordered]), fractions, where="post", label=label)
    axis.set_xlabel("end-to-end latency per request (ms)")
    axis.set_ylabel("fraction of requests")
    axis.set_ylim(0, 1.02)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    _title(fig, "Per-request latency distribution (CDF)", subtitle)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
