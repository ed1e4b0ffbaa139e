"""The dashboard's key panels, read from Prometheus's query_range answers and drawn as a grid
of small plots titled like the dashboard's (bench/monitoring.py makes the run)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from observability.dashboard import VARIABLES, dashboard, substituted

# A short run: rates over 20 s windows instead of Grafana's minute-long $__rate_interval.
RATE_WINDOW = "20s"
# Panel title -> the legends drawn (None: every target); in the grid's order.
PANELS: dict[str, set[str] | None] = {
    "Finish Reason": None, "Token Throughput": None, "Scheduler State": None,
    "Time To First Token Latency": {"P95", "P50"}, "Inter Token Latency": {"P95", "P50"},
    "Cache Utilization": None, "Ready": None, "Startup Phases": None, "Canary Failures In A Row": None,
}
Series = dict[str, Any]  # {"label": str, "times": [unix s], "values": [float | None]}


def targets(title: str) -> list[tuple[str, str]]:
    """(legendFormat, PromQL with this run's variables) of the dashboard's panel `title`."""
    values = {**VARIABLES, "$__rate_interval": RATE_WINDOW}
    for panel in dashboard()["panels"]:
        if panel["title"] == title:
            return [(t["legendFormat"], substituted(t["expr"], values)) for t in panel["targets"]]
    raise KeyError(f"no panel titled {title!r} in the dashboard")


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: {{label}} replaced by the series' label value; the run has one replica,
    so its address is left out."""
    labels = {key: value for key, value in labels.items() if key != "instance"}
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def parse(result: list[dict], template: str) -> list[Series]:
    """One series per matrix entry of a query_range `result`; NaN (no data) becomes None."""
    def number(raw: str) -> float | None:
        value = float(raw)
        return None if math.isnan(value) else value

    return [{"label": legend(template, entry["metric"]), "times": [float(t) for t, _ in entry["values"]],
             "values": [number(v) for _, v in entry["values"]]} for entry in result]


def panel_series(title: str, fetch: Callable[[str], list[dict]]) -> list[Series]:
    """Every drawn series of one panel; `fetch` runs query_range for one PromQL expression."""
    keep = PANELS.get(title)
    return [series for template, expr in targets(title) if keep is None or template in keep
            for series in parse(fetch(expr), template)]


def plot(panels: dict[str, list[Series]], phases: list[dict], start: float, path: Path, title: str) -> None:
    """A 3-column grid, seconds since `start` on x, each phase shaded and named in the first panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(panels) / 3)
    figure, axes = plt.subplots(rows, 3, figsize=(15, 3.4 * rows), sharex=True, squeeze=False)
    for index, (axis, (name, series)) in enumerate(zip(axes.flat, panels.items(), strict=False)):
        shade(axis, phases, start, label=index == 0)
        for one in series:
            axis.plot([t - start for t in one["times"]],
                      [math.nan if v is None else v for v in one["values"]], label=one["label"] or name, lw=1.4)
        axis.set_title(name, fontsize=10)
        axis.tick_params(labelsize=8)
        if series:
            axis.legend(fontsize=7, loc="upper left")
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("seconds since Prometheus started", fontsize=8)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def shade(axis: Any, phases: list[dict], start: float, label: bool) -> None:
    """Grey bands for the load and the stopped engine; their names on top of the first panel."""
    colours = {"c=1": "#dde8f5", "c=8": "#bcd3ee", "engine stopped": "#f5d0d0"}
    for phase in phases:
        if phase["name"] in colours:
            axis.axvspan(phase["start"] - start, phase["end"] - start, color=colours[phase["name"]], lw=0)
            if label:
                axis.annotate(phase["name"], ((phase["start"] + phase["end"]) / 2 - start, 0.98),
                              xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=7)
