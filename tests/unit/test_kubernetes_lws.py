"""Several nodes per model on Kubernetes: the LeaderWorkerSet component, rendered by the real
`kubectl kustomize`, its LeaderWorkerSet checked against a schema written from LWS's API
reference (deploy/kubernetes/schemas/leaderworkerset-v1.json) and its pod template, like every
built-in kind, strictly against the Kubernetes schemas; then each pod's settings resolved
for its role as LWS would set them."""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import pytest

from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from tests.unit.test_conformance import LWS_GROUP, LWS_ROLES
from tests.unit.test_kubernetes import KUBERNETES_VERSION, ROOT, render

EXAMPLE = "examples/gemma-3-27b-npu-lws"
SCHEMA = json.loads((ROOT / "deploy" / "kubernetes" / "schemas" / "leaderworkerset-v1.json").read_text())
INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
CARDS = "huawei.com/Ascend910"


def docs(kind: str) -> list[dict]:
    return [d for d in render(EXAMPLE) if d["kind"] == kind]


def group() -> dict:
    (lws,) = docs("LeaderWorkerSet")
    return lws


def template() -> dict:
    return group()["spec"]["leaderWorkerTemplate"]["workerTemplate"]


def serve_container() -> dict:
    (serve,) = [c for c in template()["spec"]["containers"] if c["name"] == "serve"]
    return serve


def test_every_document_validates():
    for doc in render(EXAMPLE):
        if doc["kind"] == "LeaderWorkerSet":
            jsonschema.validate(doc, SCHEMA)
            pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "group"},
                            "template": doc["spec"]["leaderWorkerTemplate"]["workerTemplate"]}
            kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("change", [
    lambda s: s["leaderWorkerTemplate"].update(size=0),
    lambda s: s["leaderWorkerTemplate"].update(restartPolicy="Always"),
    lambda s: s["rolloutStrategy"]["rollingUpdateConfiguration"].update(maxUnavailable=0, maxSurge=0),
    lambda s: s.update(startupPolicy="WorkersFirst"),
    lambda s: s["leaderWorkerTemplate"].update(workerTemplates={}),
    lambda s: s["leaderWorkerTemplate"].pop("workerTemplate"),
])
def test_the_schema_rejects_what_lws_rejects(change):
    broken = copy.deepcopy(group())
    change(broken["spec"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_the_group_replaces_the_deployment_and_only_the_leader_serves():
    assert docs("Deployment") == []
    (service,) = docs("Service")
    selector = dict(service["spec"]["selector"])
    assert selector.pop(INDEX_LABEL) == "0"  # LWS labels each pod with its index; 0 is the leader
    assert selector.items() <= template()["metadata"]["labels"].items()
    # The leader cannot be ready before its workers join: workers must not wait for it.
    assert group()["spec"]["startupPolicy"] == "LeaderCreated"
    assert group()["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"


def test_the_template_keeps_the_platforms_pod_with_resolved_references():
    (config,) = docs("ConfigMap")
    spec = template()["spec"]
    refs = {e["configMapRef"]["name"] for c in spec["containers"] + spec["initContainers"]
            for e in c.get("envFrom", [])}
    assert refs == {config["metadata"]["name"]}  # the generated name, hash suffix included
    (claim,) = docs("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # nodes share one download
    assert {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v} == {
        claim["metadata"]["name"]}
    assert [c["name"] for c in spec["initContainers"]] == ["download"]
    assert {p: serve_container()[p]["exec"]["command"][3] for p in ("startupProbe", "readinessProbe",
                                                                    "livenessProbe")} == {
        "startupProbe": "startup", "readinessProbe": "ready", "livenessProbe": "live"}


def test_nodes_reach_each_other_on_the_pods_address():
    env = {e["name"]: e for e in serve_container()["env"]}
    for name in ("HCCL_IF_IP", "VLLM_HOST_IP"):
        assert env[name]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert {env[n]["value"] for n in ("GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "HCCL_SOCKET_IFNAME")} == {"eth0"}


def pod_environment(index: int) -> dict[str, str]:
    """What a pod of the group resolves: the ConfigMap, the fixed env, and LWS's variables."""
    (config,) = docs("ConfigMap")
    fixed = {e["name"]: e["value"] for e in serve_container()["env"] if "value" in e}
    size = group()["spec"]["leaderWorkerTemplate"]["size"]
    lws = {"LWS_GROUP_SIZE": str(size), "LWS_WORKER_INDEX": str(index),
           "LWS_LEADER_ADDRESS": "ascend-serve-0.ascend-serve.serving"}
    return {**{k: v for k, v in config["data"].items() if v != ""}, **fixed, **lws}


@pytest.mark.parametrize("role", sorted(LWS_ROLES))
def test_each_pod_takes_its_role_and_the_groups_cards(role):
    settings = load_settings(pod_environment(int(LWS_ROLES[role])))
    assert settings.node_role == role
    argv = render_command(settings, "/models/m").argv
    assert ("--headless" in argv) == (role == "worker")
    size = group()["spec"]["leaderWorkerTemplate"]["size"]
    assert settings.cards_per_model // size == serve_container()["resources"]["limits"][CARDS]
    # The conformance test parses the renders of this very group with the target vLLMs.
    shape = {"LWS_GROUP_SIZE": str(size), "TENSOR_PARALLEL_SIZE": str(settings.tensor_parallel_size),
             "PIPELINE_PARALLEL_SIZE": str(settings.pipeline_parallel_size)}
    assert shape.items() <= LWS_GROUP.items()
