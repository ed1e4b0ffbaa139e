"""bench/results/routing.png: per workload (rows), c=8 TTFT p50, c=8 requests per second, the
prefix-cache hit rate and the busiest replica's share of the requests, a bar per router policy and
prefix-caching setting (bench/routing.py makes the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (title, value of one c=8 cell)
METRICS = (("TTFT p50 at c=8 (s)", lambda c: c["ttft_p50_s"]),
           ("requests/s at c=8", lambda c: c["rps"]),
           ("prefix-cache hit rate at c=8", lambda c: c["hit_rate"] or 0.0),
           ("busiest replica's share at c=8", lambda c: max(c["per_replica"]) / max(1, sum(c["per_replica"]))))


def bars(cells: list[dict[str, Any]], workload: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, c=8 cell) for `workload`, prefix caching off first, policies in run order."""
    chosen = [c for c in cells if c["workload"] == workload and c["concurrency"] == 8]
    chosen.sort(key=lambda c: c["prefix_caching"])
    return [(f"{c['policy']}\nPC {'on' if c['prefix_caching'] else 'off'}", c) for c in chosen]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(result.get("workloads", {}))
    figure, axes = plt.subplots(len(workloads), len(METRICS), figsize=(4.2 * len(METRICS), 3.2 * len(workloads)),
                                squeeze=False)
    for row, workload in enumerate(workloads):
        labelled = bars(result["cells"], workload)
        for column, (title, value) in enumerate(METRICS):
            axis = axes[row][column]
            heights = [value(c) or 0.0 for _, c in labelled]
            colours = ["#9bb8d8" if not c["prefix_caching"] else "#2f6aa8" for _, c in labelled]
            axis.bar(range(len(labelled)), heights, color=colours)
            axis.set_xticks(range(len(labelled)), [label for label, _ in labelled], fontsize=6)
            axis.set_title(f"{workload}: {title}", fontsize=9)
            axis.tick_params(axis="y", labelsize=7)
    figure.suptitle("Router policy x prefix caching (PC), 2 CPU replicas, one run", fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
