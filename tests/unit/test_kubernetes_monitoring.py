"""The Kubernetes monitoring component: rendered by the real `kubectl kustomize`, core objects
validated against the Kubernetes schemas, the prometheus-operator objects against schemas
written from its API reference, and carrying exactly the rules and dashboard of observability/."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from entrypoint.settings import Settings
from observability.dashboard import dashboard
from tests.unit.test_kubernetes import KUBERNETES_VERSION, containers, one, render
from tests.unit.test_prometheus_rules import RULES, promtool

EXAMPLE = "examples/cpu-with-monitoring"
SCHEMAS = yaml.safe_load((Path(__file__).parent / "schemas" / "monitoring.coreos.com-v1.yaml").read_text())
OPERATOR_KINDS = ("PodMonitor", "PrometheusRule")


def operator_schema(kind: str) -> dict:
    return {"$defs": SCHEMAS["$defs"], **SCHEMAS[kind]}


def test_every_document_validates():
    docs = render(EXAMPLE)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "ConfigMap", "Deployment", "PersistentVolumeClaim",
                                                "PodMonitor", "PrometheusRule", "Service"]
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            jsonschema.validate(doc, operator_schema(doc["kind"]))
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("kind", "path", "typo"), [
    ("PodMonitor", ("spec", "podMetricsEndpoints", 0), "scrapeInterval"),
    ("PrometheusRule", ("spec", "groups", 0, "rules", 0), "severity"),
])
def test_operator_schemas_reject_unknown_fields(kind, path, typo):
    doc = json.loads(json.dumps(one(EXAMPLE, kind)))
    target = doc
    for key in path:
        target = target[key]
    target[typo] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, operator_schema(kind))


def test_prometheus_rule_carries_the_rules_files(tmp_path):
    groups = [g for path in sorted(RULES.glob("*.yaml")) for g in yaml.safe_load(path.read_text())["groups"]]
    spec = one(EXAMPLE, "PrometheusRule")["spec"]
    assert spec["groups"] == groups
    path = tmp_path / "prometheusrule-spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_configmap_for_the_grafana_sidecar():
    (configmap,) = [d for d in render(EXAMPLE) if d["kind"] == "ConfigMap" and "grafana_dashboard" in
                    d["metadata"].get("labels", {})]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["ascend-serve-dashboard.json"]) == dashboard()


def test_pod_monitor_scrapes_vllm_and_the_supervisor_on_named_ports():
    monitor = one(EXAMPLE, "PodMonitor")
    labels = one(EXAMPLE, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in containers(EXAMPLE)["serve"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["http", "metrics"]
    settings = next(d for d in render(EXAMPLE) if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"].startswith("ascend-serve-settings"))
    default = Settings.model_fields["metrics_port"].default
    assert ports["metrics"] == int(settings["data"].get("METRICS_PORT", default)) == default


def test_metrics_behind_the_key_and_the_pod_monitor_sends_one():
    example = "examples/cpu-with-metrics-key"
    for doc in render(example):
        if doc["kind"] in OPERATOR_KINDS:
            jsonschema.validate(doc, operator_schema(doc["kind"]))
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    env = {e["name"]: e.get("value") for e in containers(example)["serve"]["env"]}
    assert env["METRICS_NEED_KEY"] == "true" and env["API_KEY_FILE"].startswith("/run/secrets/")
    vllm, supervisor = one(example, "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert vllm["port"] == "http" and vllm["authorization"] == \
        {"type": "Bearer", "credentials": {"name": "ascend-serve-secrets", "key": "metrics_key"}}
    assert "authorization" not in supervisor  # METRICS_PORT's metrics stay open
