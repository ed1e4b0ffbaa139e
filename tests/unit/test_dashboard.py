"""The Grafana dashboard: generated from observability/dashboard.py, every query valid PromQL
(checked by the real promtool), vLLM's official panels present and on both metric names."""

from __future__ import annotations

import json

import yaml

from observability import generate
from observability.dashboard import dashboard, queries, substituted
from tests.unit.test_prometheus_rules import RENAMED, promtool

# vLLM's official dashboard (examples/observability/prometheus_grafana/grafana.json).
OFFICIAL_PANELS = {"E2E Request Latency", "Token Throughput", "Inter Token Latency", "Scheduler State",
                   "Time To First Token Latency", "Cache Utilization", "Request Prompt Length",
                   "Request Generation Length", "Finish Reason", "Queue Time", "Requests Prefill and Decode Time"}
BUNDLE_METRICS = {"ascend_serve_ready", "ascend_serve_startup_phase_seconds",
                  "ascend_serve_canary_consecutive_failures", "ascend_serve_canary_latency_seconds",
                  "ascend_serve_start_time_seconds", "ascend_serve_download_bytes_total", "ascend_serve_build_info"}


def test_generated_files_are_up_to_date():
    assert generate.main(["--check"]) == 0, "regenerate: make docs"
    assert json.loads(generate.DASHBOARD.read_text()) == dashboard()


def test_every_query_is_valid_promql(tmp_path):
    # A recording rule per query: `promtool check rules` parses each expression.
    rules = [{"record": f"dashboard:query_{n}", "expr": substituted(expr)}
             for n, (_, expr) in enumerate(queries(dashboard()))]
    assert all("$" not in rule["expr"] for rule in rules), "a query uses a variable VARIABLES does not define"
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_official_panels_and_the_bundles_metrics_are_there():
    model = dashboard()
    assert {panel["title"] for panel in model["panels"]} >= OFFICIAL_PANELS
    exprs = " ".join(expr for _, expr in queries(model))
    assert all(metric in exprs for metric in BUNDLE_METRICS)


def test_queries_read_both_names_where_vllm_renamed_a_metric():
    for title, expr in queries(dashboard()):
        for old, new in RENAMED.items():
            assert (old in expr) == (new in expr), f"{title}: {expr}"


def test_panels_have_unique_ids_and_do_not_overlap():
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(set(cells)) == len(cells)
    for panel in panels:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and panel["targets"], panel["title"]
