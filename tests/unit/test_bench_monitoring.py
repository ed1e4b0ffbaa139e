"""bench/monitoring_plot.py on recorded query_range answers of a real Prometheus (no server):
the dashboard's PromQL with this run's variables, legends, NaN gaps and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

from bench.monitoring_plot import PANELS, legend, panel_series, parse, plot, targets

# Prometheus's /api/v1/query_range answers, keyed by the PromQL asked, from a run of bench/monitoring.py.
RECORDED = json.loads((Path(__file__).parent / "monitoring_samples" / "query_range.json").read_text())


def fetch(expr: str) -> list[dict]:
    return RECORDED.get(expr, {"data": {"result": []}})["data"]["result"]


def test_every_panel_comes_from_the_dashboard_with_every_variable_set():
    for title in PANELS:
        assert targets(title), title
        for _, expr in targets(title):
            assert "$" not in expr, expr
            assert "rate(" not in expr or "[20s]" in expr, expr


def test_legends_follow_grafana_without_the_single_replicas_address():
    labels = {"instance": "127.0.0.1:9464", "phase": "weights", "finished_reason": "length"}
    assert legend("{{instance}} {{phase}}", labels) == "weights"
    assert legend("{{ finished_reason }}", labels) == "length"
    assert legend("P95", labels) == "P95"


def test_a_recorded_answer_becomes_one_series_per_label_set_with_gaps_for_nan():
    answer = next(a for expr, a in RECORDED.items() if expr.startswith("histogram_quantile(0.95"))
    series = parse(answer["data"]["result"], "P95")
    assert [s["label"] for s in series] == ["P95"]
    times, values = series[0]["times"], series[0]["values"]
    assert len(times) == len(values) > 10 and times == sorted(times)
    assert None in values, "no NaN (no requests in the window) in the recording"
    assert any(v is not None and v > 0 for v in values)


def test_a_panel_keeps_only_its_drawn_legends():
    drawn = {s["label"] for s in panel_series("Time To First Token Latency", fetch)}
    assert drawn == {"P95", "P50"}
    assert {s["label"] for s in panel_series("Startup Phases", fetch)} >= {"ready"}


def test_the_grid_is_a_png(tmp_path):
    panels = {title: panel_series(title, fetch) for title in PANELS}
    start = min(t for series in panels.values() for s in series for t in s["times"])
    phases = [{"name": "c=8", "start": start + 10, "end": start + 40}]
    plot(panels, phases, start, tmp_path / "monitoring.png", "recorded")
    assert (tmp_path / "monitoring.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
