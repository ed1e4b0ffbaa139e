"""The Grafana dashboard: vLLM's official panels (examples/observability/prometheus_grafana in
the vLLM repository), rebuilt on both of vLLM's metric names, plus the bundle's own panels.

`python -m observability.generate` writes it to observability/dashboards/ascend-serve.json.
Every query uses only the variables in VARIABLES, so a test can substitute them and check
each query with promtool.
"""

from __future__ import annotations

from typing import Any

UID = "ascend-serve"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
MODEL = 'model_name=~"$model_name"'
RATE = "$__rate_interval"
# Grafana's variables as the queries use them, with a value PromQL accepts (for checks).
VARIABLES = {"$model_name": ".*", "$instance": ".*", "$__rate_interval": "1m"}
QUANTILES = (0.99, 0.95, 0.9, 0.5)
WIDTH, HEIGHT = 12, 8

Target = tuple[str, str]  # (legend, PromQL)


def either(new: str, old: str) -> str:
    """vLLM's current metric name, or the name older versions export."""
    return f"({new} or {old})"


def quantiles(bucket_rate: str) -> list[Target]:
    """p99..p50 over `rate(..._bucket)` terms summed by le."""
    return [(f"P{round(q * 100)}", f"histogram_quantile({q}, sum by (le) ({bucket_rate}))") for q in QUANTILES]


def mean(metric: str) -> Target:
    """Sum over count of a histogram, per second of the window."""
    return ("Mean", f"sum(rate({metric}_sum{{{MODEL}}}[{RATE}])) / sum(rate({metric}_count{{{MODEL}}}[{RATE}]))")


def histogram_panel(metric: str) -> list[Target]:
    """Quantiles and mean of one of vLLM's latency histograms."""
    return [*quantiles(f"rate({metric}_bucket{{{MODEL}}}[{RATE}])"), mean(metric)]


ITL_BUCKETS = either(f"rate(vllm:inter_token_latency_seconds_bucket{{{MODEL}}}[{RATE}])",
                     f"rate(vllm:time_per_output_token_seconds_bucket{{{MODEL}}}[{RATE}])")
KV_USAGE = either(f"vllm:kv_cache_usage_perc{{{MODEL}}}", f"vllm:gpu_cache_usage_perc{{{MODEL}}}")

# (title, description, unit, targets): vLLM's official panels first, in their order.
VLLM_PANELS: list[tuple[str, str, str, list[Target]]] = [
    ("E2E Request Latency", "End-to-end request latency.", "s", histogram_panel("vllm:e2e_request_latency_seconds")),
    ("Token Throughput", "Prompt and generated tokens per second.", "short", [
        ("Prompt tokens/s", f"sum(rate(vllm:prompt_tokens_total{{{MODEL}}}[{RATE}]))"),
        ("Generation tokens/s", f"sum(rate(vllm:generation_tokens_total{{{MODEL}}}[{RATE}]))")]),
    ("Inter Token Latency", "Time between output tokens (inter_token_latency_seconds; "
     "time_per_output_token_seconds before vLLM renamed it).", "s", quantiles(ITL_BUCKETS)),
    ("Scheduler State", "Requests running and waiting.", "short", [
        ("Running", f"sum(vllm:num_requests_running{{{MODEL}}})"),
        ("Waiting", f"sum(vllm:num_requests_waiting{{{MODEL}}})")]),
    ("Time To First Token Latency", "Time to the first output token.", "s",
     histogram_panel("vllm:time_to_first_token_seconds")),
    ("Cache Utilization", "Fraction of KV-cache blocks in use, per replica (kv_cache_usage_perc; "
     "gpu_cache_usage_perc before vLLM renamed it).", "percentunit", [
        ("{{instance}}", f"max by (instance) {KV_USAGE}")]),
    ("Request Prompt Length", "Prompt tokens per request.", "short",
     quantiles(f"rate(vllm:request_prompt_tokens_bucket{{{MODEL}}}[{RATE}])")),
    ("Request Generation Length", "Generated tokens per request.", "short",
     quantiles(f"rate(vllm:request_generation_tokens_bucket{{{MODEL}}}[{RATE}])")),
    ("Finish Reason", "Finished requests per second by reason (stop, length, abort).", "reqps", [
        ("{{finished_reason}}", f"sum by (finished_reason) (rate(vllm:request_success_total{{{MODEL}}}[{RATE}]))")]),
    ("Queue Time", "Seconds requests spent waiting, per second.", "s", [
        ("Queue", f"sum(rate(vllm:request_queue_time_seconds_sum{{{MODEL}}}[{RATE}]))")]),
    ("Requests Prefill and Decode Time", "Seconds spent in prefill and decode, per second.", "s", [
        ("Prefill", f"sum(rate(vllm:request_prefill_time_seconds_sum{{{MODEL}}}[{RATE}]))"),
        ("Decode", f"sum(rate(vllm:request_decode_time_seconds_sum{{{MODEL}}}[{RATE}]))")]),
    ("Prefix Cache Hit Rate", "Prompt tokens found in the prefix cache (ENABLE_PREFIX_CACHING).", "percentunit", [
        ("Hit rate", f"sum(rate(vllm:prefix_cache_hits_total{{{MODEL}}}[{RATE}])) / "
                     f"sum(rate(vllm:prefix_cache_queries_total{{{MODEL}}}[{RATE}]))")]),
]

BUNDLE = 'instance=~"$instance"'
# The bundle's own panels (METRICS_PORT) and the per-replica view.
BUNDLE_PANELS: list[tuple[str, str, str, list[Target]]] = [
    ("Ready", "1 once the replica passed its smoke check.", "short", [
        ("{{instance}}", f"ascend_serve_ready{{{BUNDLE}}}")]),
    ("Startup Phases", "Seconds of the last start in each phase (ready: the whole start).", "s", [
        ("{{instance}} {{phase}}", f"ascend_serve_startup_phase_seconds{{{BUNDLE}}}")]),
    ("Canary Failures In A Row", "Consecutive failed canary looks; live fails at the limit (CANARY_FAILURES).",
     "short", [("{{instance}}", f"ascend_serve_canary_consecutive_failures{{{BUNDLE}}}"),
               ("limit", f"max(ascend_serve_canary_failures_limit{{{BUNDLE}}})")]),
    ("Canary Latency", "The canary's 1-token completion, p95, and seconds since its last success.", "s", [
        ("p95", f"histogram_quantile(0.95, sum by (le) (rate(ascend_serve_canary_latency_seconds_bucket{{{BUNDLE}}}"
                f"[{RATE}])))"),
        ("{{instance}} since success", f"time() - ascend_serve_canary_last_success_time_seconds{{{BUNDLE}}} "
                                       f"and ascend_serve_canary_last_success_time_seconds{{{BUNDLE}}} > 0")]),
    ("Restarts", "Supervisor (container) starts in the last hour, beyond the first.", "short", [
        ("{{instance}}", f"changes(ascend_serve_start_time_seconds{{{BUNDLE}}}[1h])")]),
    ("Weights Download", "Bytes fetched, retries and seconds of the last download.", "short", [
        ("{{instance}} bytes", f"ascend_serve_download_bytes_total{{{BUNDLE}}}"),
        ("{{instance}} retries", f"ascend_serve_download_retries_total{{{BUNDLE}}}"),
        ("{{instance}} seconds", f"ascend_serve_download_duration_seconds{{{BUNDLE}}}")]),
    ("Load Per Replica", "Requests running and generated tokens/s on each replica.", "short", [
        ("{{instance}} running", f"sum by (instance) (vllm:num_requests_running{{{MODEL}}})"),
        ("{{instance}} tokens/s", f"sum by (instance) (rate(vllm:generation_tokens_total{{{MODEL}}}[{RATE}]))")]),
    ("Request Share Per Replica", "Each replica's share of the finished requests (AscendServeLoadSkewed fires above "
     "80% for 5 minutes while another replica is ready).", "percentunit", [
        ("{{instance}}", f"sum by (instance) (rate(vllm:request_success_total{{{MODEL}}}[{RATE}])) "
                         f"/ ignoring (instance) group_left () "
                         f"sum(rate(vllm:request_success_total{{{MODEL}}}[{RATE}]))")]),
    ("What Is Served", "Model, served name, platform, image and vLLM versions, settings hash.", "short", [
        ("{{model}} {{platform}} vLLM {{vllm_version}} image {{image_version}} settings {{settings_hash}}",
         f"ascend_serve_build_info{{{BUNDLE}}}")]),
]


def panel(panel_id: int, title: str, description: str, unit: str, targets: list[Target]) -> dict[str, Any]:
    """One time-series panel, two to a row."""
    index = panel_id - 1
    return {
        "id": panel_id, "type": "timeseries", "title": title, "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": (index % 2) * WIDTH, "y": (index // 2) * HEIGHT},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "none"}},
        "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True,
                     "refId": chr(ord("A") + n)} for n, (legend, expr) in enumerate(targets)],
    }


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-value query variable, all selected by default."""
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def dashboard() -> dict[str, Any]:
    """The whole dashboard as Grafana's JSON model."""
    specs = VLLM_PANELS + BUNDLE_PANELS
    return {
        "uid": UID, "title": "ascend-serve: vLLM and the bundle", "editable": True, "schemaVersion": 39,
        "description": "vLLM's official panels (both metric names) and the ascend-serve bundle's own metrics.",
        "tags": ["vllm", "ascend-serve"], "time": {"from": "now-1h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [
            {"name": "DS_PROMETHEUS", "label": "Datasource", "type": "datasource", "query": "prometheus"},
            variable("model_name", "Model", "label_values(vllm:num_requests_running, model_name)"),
            variable("instance", "Bundle replica", "label_values(ascend_serve_build_info, instance)"),
        ]},
        "panels": [panel(n, *spec) for n, spec in enumerate(specs, start=1)],
    }


def queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of a dashboard."""
    return [(p["title"], t["expr"]) for p in model["panels"] for t in p["targets"]]


def substituted(expr: str, values: dict[str, str] = VARIABLES) -> str:
    """A panel's PromQL with Grafana's variables replaced (longest name first: $__rate_interval)."""
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    return expr
