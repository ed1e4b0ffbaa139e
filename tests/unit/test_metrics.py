"""The bundle's own metrics: served on METRICS_PORT, fed by the supervisor's steps, parsed by
the real Prometheus text parser."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from entrypoint import metrics
from entrypoint.canary import Canary, Look
from entrypoint.errors import SettingsError, UserError
from entrypoint.preflight import preflight_errors
from entrypoint.resolver import load_settings
from entrypoint.state import StateDir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def value(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def scrape(port: int) -> dict[str, list]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_metrics_port_serves_the_info_series_and_the_start(tmp_path):
    port = free_port()
    settings = load_settings({"PLATFORM": "cpu", "HOST": "127.0.0.1", "METRICS_PORT": str(port),
                              "STATE_DIR": str(tmp_path)})
    metrics.serve_metrics(settings)
    families = scrape(port)
    (info,) = families["ascend_serve_build_info"]
    assert info.labels["model"] == settings.model_id and info.labels["platform"] == "cpu"
    assert info.labels["served_model_name"] == settings.served_model_name
    assert info.labels["settings_hash"] == metrics.settings_hash(settings) and info.labels["vllm_version"]
    assert families["ascend_serve_start_time_seconds"][0].value > 0
    assert families["ascend_serve_canary_failures_limit"][0].value == settings.canary_failures
    assert "process_start_time_seconds" in families


def test_a_busy_metrics_port_is_one_line_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings({"PLATFORM": "cpu", "HOST": "127.0.0.1", "METRICS_PORT": str(port),
                                  "MODEL_CACHE_DIR": str(tmp_path / "c"), "STATE_DIR": str(tmp_path / "s")})
        errors = preflight_errors(settings)
        assert [e for e in errors if e.startswith(f"METRICS_PORT={port}: already in use")]
        with pytest.raises(UserError, match=f"^METRICS_PORT={port}: cannot listen"):
            metrics.serve_metrics(settings)


def test_metrics_port_equal_to_port_is_refused_by_the_settings(tmp_path):
    with pytest.raises(SettingsError) as raised:
        load_settings({"PLATFORM": "cpu", "PORT": "8123", "METRICS_PORT": "8123"})
    assert any(e.startswith("METRICS_PORT=8123: PORT") for e in raised.value.lines)


def test_settings_hash_follows_the_effective_settings():
    one, same, other = (load_settings({"PLATFORM": "cpu", **extra})
                        for extra in ({}, {}, {"MAX_NUM_SEQS": "8"}))
    assert metrics.settings_hash(one) == metrics.settings_hash(same) != metrics.settings_hash(other)
    secret = load_settings({"PLATFORM": "cpu", "API_KEY": "k1"})
    assert metrics.settings_hash(secret) == metrics.settings_hash(load_settings({"PLATFORM": "cpu", "API_KEY": "k2"}))


def test_canary_looks_feed_the_failure_gauge_and_last_success(tmp_path):
    canary = Canary("http://127.0.0.1:9", "m", 1.0, 1.0, 3, StateDir(tmp_path))
    failed_before = value("ascend_serve_canary_looks_total", result="failed") or 0.0
    canary.record(Look(True, "answered", 0.02))
    success = value("ascend_serve_canary_last_success_time_seconds")
    assert success and success > 0
    canary.record(Look(False, "no answer", 1.0))
    canary.record(Look(False, "no answer", 1.0))
    assert value("ascend_serve_canary_consecutive_failures") == 2
    assert value("ascend_serve_canary_looks_total", result="failed") == failed_before + 2
    assert value("ascend_serve_canary_last_success_time_seconds") == success
    canary.record(Look(True, "answered", 0.02))
    assert value("ascend_serve_canary_consecutive_failures") == 0


def test_phases_ready_and_vllm_starts():
    starts = value("ascend_serve_vllm_starts_total") or 0.0
    metrics.vllm_started()
    metrics.phase_done("weights", 1.5)
    metrics.set_ready(True)
    assert value("ascend_serve_vllm_starts_total") == starts + 1
    assert value("ascend_serve_startup_phase_seconds", phase="weights") == 1.5
    assert value("ascend_serve_ready") == 1
    metrics.set_ready(False)
    assert value("ascend_serve_ready") == 0


def test_the_monitoring_docs_document_every_metric():
    readme = (Path(__file__).parents[2] / "docs" / "monitoring.md").read_text()
    for family in metrics.REGISTRY.collect():
        if family.name.startswith(metrics.NAMESPACE):
            shown = family.name + ("_total" if family.type == "counter" else "")
            assert f"`{shown}" in readme, f"docs/monitoring.md's metrics table lacks {shown}"
