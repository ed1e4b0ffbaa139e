"""`docker compose config` for every platform override (needs the compose plugin, not an engine)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.container.conftest import ROOT

pytestmark = pytest.mark.container
NPU_DEVICES = {"/dev/davinci0", "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"}
NPU_MOUNTS = {"/usr/local/dcmi", "/usr/local/bin/npu-smi", "/usr/local/Ascend/driver/lib64/",
              "/usr/local/Ascend/driver/version.info", "/etc/ascend_install.info"}


def config(platform: str, *overrides: str, **env: str) -> dict:
    files = ["compose/compose.yaml", f"compose/{platform}.yaml", *overrides]
    done = subprocess.run(["docker", "compose", *(arg for f in files for arg in ("-f", f)), "--profile", "tools",
                           "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("platform", ["npu", "cpu", "cuda"])
def test_config_is_valid(platform):
    serve = config(platform)["services"]["serve"]
    assert serve["environment"]["PLATFORM"] == platform
    assert serve["healthcheck"]["test"][-2:] == ["healthcheck", "ready"]


def test_npu_carries_every_device_and_mount():
    serve = config("npu", NPU_DEVICE="3")["services"]["serve"]
    devices = {d["source"] for d in serve["devices"]}
    assert devices == (NPU_DEVICES - {"/dev/davinci0"}) | {"/dev/davinci3"}
    assert {v["source"] for v in serve["volumes"] if v["type"] == "bind"} >= NPU_MOUNTS
    assert serve["environment"]["ASCEND_VISIBLE_DEVICES"] == serve["environment"]["ASCEND_RT_VISIBLE_DEVICES"] == "3"


def test_npu_with_several_cards_maps_each_and_lists_them_in_both_variables(tmp_path):
    # As `make up NPU_DEVICES=4,5` runs it: the override scripts/npu-devices.py writes, and
    # compose/npu.yaml's own card set to the first one.
    cards = tmp_path / "npu-devices.yaml"
    done = subprocess.run(["python3", "scripts/npu-devices.py", str(cards)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": os.environ["PATH"], "NPU_DEVICES": "4,5"})
    assert done.returncode == 0, done.stderr
    serve = config("npu", str(cards), NPU_DEVICE=done.stdout.strip())["services"]["serve"]
    assert {d["source"] for d in serve["devices"]} == (NPU_DEVICES - {"/dev/davinci0"}) | {"/dev/davinci4",
                                                                                          "/dev/davinci5"}
    assert serve["environment"]["ASCEND_VISIBLE_DEVICES"] == serve["environment"]["ASCEND_RT_VISIBLE_DEVICES"] == "4,5"


def test_the_npu_build_gets_the_base_and_the_image_version_make_chose():
    build = config("npu", BASE_IMAGE="quay.io/ascend/vllm-ascend:v0.23.0-a3",
                   IMAGE_VERSION="v0.23.0")["services"]["serve"]["build"]
    assert build["args"]["BASE_IMAGE"] == "quay.io/ascend/vllm-ascend:v0.23.0-a3"
    assert build["args"]["IMAGE_VERSION"] == "v0.23.0"


@pytest.mark.parametrize("platform", ["npu", "cpu", "cuda"])
def test_bench_and_eval_run_the_guides_tools_against_serve(platform):
    services = config(platform)["services"]
    for name, script in (("bench", "eval/perf_eval.py"), ("eval", "eval/accuracy_eval.py")):
        tool = services[name]
        assert tool["profiles"] == ["tools"] and tool["environment"]["PLATFORM"] == platform
        assert tool["entrypoint"][:2] == ["python3", script] and "http://serve:8000" in tool["entrypoint"]
        assert tool["depends_on"]["serve"]["condition"] == "service_healthy"
        assert {v["target"] for v in tool["volumes"]} == {"/models", "/opt/bundle/perf_results"}


def test_secrets_reach_every_service_as_files(tmp_path):
    key, token = tmp_path / "api_key", tmp_path / "modelscope_token"
    key.write_text("sk-compose-config\n")
    token.write_text("ms-compose-config\n")
    done = config("cpu", "compose/api-key.yaml", "compose/modelscope-token.yaml", API_KEY_FILE=str(key),
                  MODELSCOPE_TOKEN_FILE=str(token))
    assert done["secrets"]["api_key"]["file"] == str(key)
    for name, service in done["services"].items():
        assert service["environment"]["API_KEY_FILE"] == "/run/secrets/api_key", name
    assert done["services"]["serve"]["environment"]["MODELSCOPE_TOKEN_FILE"] == "/run/secrets/modelscope_token"
    assert "sk-compose-config" not in json.dumps(done)


def test_monitoring_profile_builds_prometheus_and_leaves_serve_alone():
    done = subprocess.run(["docker", "compose", "-f", "compose/compose.yaml", "-f", "compose/cpu.yaml", "--profile",
                           "monitoring", "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]})
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert prometheus["build"]["dockerfile"] == "prometheus/Dockerfile"
    assert [(p["target"], p["published"], p["host_ip"]) for p in prometheus["ports"]] == [(9090, "9090", "127.0.0.1")]
    assert "prometheus" not in config("cpu")["services"]  # `make up` starts no Prometheus


@pytest.mark.parametrize("platform", ["npu", "cpu", "cuda"])
def test_root_file_written_by_make_equals_the_explicit_files(platform, tmp_path):
    # A copy of the checkout's compose files and the script, so the real root stays untouched.
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "compose-root.sh", tmp_path / "scripts")
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "HOST_PORT": "8123", "NPU_DEVICE": "2"}
    subprocess.run([tmp_path / "scripts" / "compose-root.sh", "proj-x", "compose/compose.yaml",
                    f"compose/{platform}.yaml"], check=True, env=env, timeout=60)
    plain = subprocess.run(["docker", "compose", "--profile", "tools", "config", "--format", "json"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, env={k: env[k] for k in ("PATH", "HOME")})
    assert plain.returncode == 0, plain.stderr
    written = json.loads(plain.stdout)
    explicit = config(platform, HOST_PORT="8123", NPU_DEVICE="2")
    assert written["name"] == "proj-x"
    assert written["services"] == json.loads(json.dumps(explicit["services"]).replace(str(ROOT), str(tmp_path)))


def test_the_test_beds_compile_cache_is_a_host_folder_at_compile_cache_dir(tmp_path):
    # What `make up TESTBED=1` adds, so test runs after the first start warm on a new cache volume.
    folder = tmp_path / "compile-cache"
    serve = config("cpu", "compose/testbed.yaml", "compose/testbed-compile-cache.yaml", FIXTURE_WEIGHTS=str(tmp_path),
                   TESTBED_COMPILE_CACHE=str(folder))["services"]["serve"]
    mounts = {volume["target"]: volume for volume in serve["volumes"]}
    assert mounts[serve["environment"]["COMPILE_CACHE_DIR"]]["source"] == str(folder)
    assert mounts["/models"]["type"] == "volume"


def test_the_warm_override_builds_the_warm_stage_under_its_own_tag():
    plain, warm = (config("cpu", *files)["services"]["serve"] for files in ((), ("compose/warm.yaml",)))
    assert (plain["build"]["target"], plain["image"]) == ("bundle", "ascend-serve-bundle:cpu")
    assert (warm["build"]["target"], warm["image"]) == ("bundle-warm", "ascend-serve-bundle:cpu-warm")


def test_the_settings_file_is_the_one_make_reads(tmp_path):
    # Make passes ENV_FILE (default .env) to Compose too, so both read one file.
    env_file = tmp_path / "settings.env"
    env_file.write_text("MAX_NUM_SEQS=7\nPLATFORM=npu\n")
    serve = config("npu", ENV_FILE=str(env_file))["services"]["serve"]
    assert (serve["environment"]["MAX_NUM_SEQS"], serve["environment"]["PLATFORM"]) == ("7", "npu")
    assert serve["environment"]["FAILED_START"] == "hold"
