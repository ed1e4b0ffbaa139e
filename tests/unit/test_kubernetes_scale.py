"""Scale-out on Kubernetes: replicas rolled with nothing dropped, vLLM's router in front,
autoscaling on vLLM's queue (KEDA or a plain HPA) and an InferencePool. Rendered by the
real `kubectl kustomize`; built-in kinds validated strictly against the Kubernetes schemas,
the CRDs against schemas written from their projects' API references (deploy/kubernetes/schemas)."""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest
import yaml

from testbed.paths import BUNDLE_CACHE
from tests.unit.test_kubernetes import KUBERNETES_VERSION, ROOT, render
from tests.unit.test_prometheus_rules import ComposeLoader

EXAMPLES = ("examples/scale-out-npu", "examples/inference-pool-cpu")
SCHEMAS = ROOT / "deploy" / "kubernetes" / "schemas"
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
               ("inference.networking.k8s.io/v1", "InferencePool"): "inferencepool-v1.json"}


def docs(example: str, kind: str, name: str | None = None) -> list[dict]:
    return [d for d in render(example) if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def serving(example: str) -> dict:
    (deployment,) = docs(example, "Deployment", "ascend-serve")
    return deployment


def pod_labels(example: str) -> dict[str, str]:
    return serving(example)["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_document_validates(example):
    for doc in render(example):
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            jsonschema.validate(doc, json.loads((SCHEMAS / CRD_SCHEMAS[key]).read_text()))
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schemas_reject_what_their_projects_reject():
    pool = docs("examples/inference-pool-cpu", "InferencePool")[0]
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[("inference.networking.k8s.io/v1", "InferencePool")]).read_text())
    for broken in ({**pool["spec"], "targetPorts": [{"number": 8000}, {"number": 8001}]},
                   {**pool["spec"], "targetPortNumber": 8000}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**pool, "spec": broken}, schema)


@pytest.mark.parametrize("example", EXAMPLES)
def test_rollout_drops_nothing(example):
    deployment = serving(example)
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    (serve,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "serve"]
    assert serve["lifecycle"]["preStop"] and serve["readinessProbe"]
    (claim,) = docs(example, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # the next pod shares the warm cache
    (budget,) = docs(example, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(example).items()


def test_router_discovers_the_serving_pods_and_may_read_only_pods():
    example = "examples/scale-out-npu"
    (router,) = docs(example, "Deployment", "ascend-serve-router")
    args = dict(a.removeprefix("--").split("=", 1) for a in router["spec"]["template"]["spec"]["containers"][0]["args"]
                if "=" in a)
    key, value = args["selector"].split("=")
    assert pod_labels(example)[key] == value
    assert args["service-discovery-port"] == "8000"
    (role,) = docs(example, "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def test_the_routed_deployments_tell_their_replicas_they_are_behind_the_router():
    # BEHIND_ROUTER turns prefix caching on by default (entrypoint/resolver.py); a single server keeps it off.
    (serve,) = [c for c in serving("examples/scale-out-npu")["spec"]["template"]["spec"]["containers"]
                if c["name"] == "serve"]
    assert {"name": "BEHIND_ROUTER", "value": "true"} in serve["env"]
    (plain,) = [c for c in serving("examples/inference-pool-cpu")["spec"]["template"]["spec"]["containers"]
                if c["name"] == "serve"]
    assert all(e["name"] != "BEHIND_ROUTER" for e in plain["env"])
    compose = yaml.load((ROOT / "compose" / "router.yaml").read_text(), ComposeLoader)
    assert compose["services"]["serve"]["environment"]["BEHIND_ROUTER"] == "true"


def test_autoscalers_target_the_deployment_on_vllms_queue():
    (scaled,) = docs("examples/scale-out-npu", "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "ascend-serve"
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert "model_name:vllm_num_requests_waiting:sum" in query  # the monitoring component's recording rule
    recorded = (ROOT / "observability" / "rules" / "recording.yaml").read_text()
    assert "record: model_name:vllm_num_requests_waiting:sum" in recorded
    # A removed replica costs a whole start to bring back: the cool-down outlasts one.
    assert scaled["spec"]["cooldownPeriod"] >= 300
    (hpa,) = docs("examples/inference-pool-cpu", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ascend-serve"
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"


@pytest.mark.parametrize("vllm_version", ["0.18.0", "0.23.0"])
def test_queue_metric_exists_in_every_target_vllm(vllm_version):
    loggers = BUNDLE_CACHE / f"target-vllm-{vllm_version}" / "site" / "vllm" / "v1" / "metrics" / "loggers.py"
    if not loggers.exists():
        pytest.fail(f"{loggers} missing: run `make target-vllm`")
    text = loggers.read_text()
    for metric in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"):
        assert f'"{metric}"' in text, f"{metric} not in vLLM {vllm_version}"


def test_inference_pool_selects_the_serving_pods_on_their_port():
    example = "examples/inference-pool-cpu"
    (pool,) = docs(example, "InferencePool")
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels(example).items()
    (serve,) = [c for c in serving(example)["spec"]["template"]["spec"]["containers"] if c["name"] == "serve"]
    assert pool["spec"]["targetPorts"] == [{"number": serve["ports"][0]["containerPort"]}]


def test_multi_card_example_asks_for_as_many_cards_as_the_settings_render():
    from entrypoint.render import render_command
    from entrypoint.resolver import load_settings

    example = "examples/gemma-3-27b-npu"
    for doc in render(example):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    (config,) = docs(example, "ConfigMap")
    active = {k: v for k, v in config["data"].items() if v != ""}
    argv = render_command(load_settings(active), "/models/m").argv
    cards = serving(example)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["huawei.com/Ascend910"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == str(cards) == "2"
