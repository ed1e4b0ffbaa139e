"""The Prometheus rules, checked and unit-tested by the real promtool (Debian's `prometheus`
package; .ci/run installs it): syntax, every alert firing on trouble and quiet on a healthy
neighbour, recording rules on both of vLLM's metric names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from entrypoint.settings import Settings

ROOT = Path(__file__).parents[2]
RULES = ROOT / "observability" / "rules"
PROMTOOL_TESTS = Path(__file__).parent / "promtool"
# vLLM's renames, old -> new: a rule reading the new name must read the old one too.
RENAMED = {"vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
           "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds"}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:  # a missing tool must fail CI, never skip the layer's only PromQL check
        pytest.fail("promtool not found: install Debian's `prometheus` package (apt-get install prometheus)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def rules(name: str) -> list[dict]:
    return [rule for group in yaml.safe_load((RULES / name).read_text())["groups"] for rule in group["rules"]]


def test_rules_pass_promtool_check():
    done = promtool("check", "rules", *map(str, sorted(RULES.glob("*.yaml"))))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("test_file", ["alerts.test.yaml", "recording.test.yaml"])
def test_promtool_unit_tests_pass(tmp_path, test_file):
    # Descriptions are prose: stripped so the tests pin firing, labels and summaries only.
    for path in RULES.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            for rule in group["rules"]:
                rule.get("annotations", {}).pop("description", None)
        (tmp_path / path.name).write_text(yaml.safe_dump(data))
    shutil.copy(PROMTOOL_TESTS / test_file, tmp_path)
    done = promtool("test", "rules", test_file, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_quiet():
    cases = [case for test in yaml.safe_load((PROMTOOL_TESTS / "alerts.test.yaml").read_text())["tests"]
             for case in test["alert_rule_test"]]
    for alert in (rule["alert"] for rule in rules("alerts.yaml")):
        mine = [case for case in cases if case["alertname"] == alert]
        assert any(case.get("exp_alerts") for case in mine), f"{alert}: no case where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{alert}: no case where it stays quiet"


def test_every_alert_has_a_severity_and_a_summary():
    for rule in rules("alerts.yaml"):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rules_read_both_names_where_vllm_renamed_a_metric():
    for rule in rules("recording.yaml") + rules("alerts.yaml"):
        for old, new in RENAMED.items():
            name = rule.get("record") or rule["alert"]
            assert (old in rule["expr"]) == (new in rule["expr"]), f"{name}: reads only one of {old}, {new}"


def test_compose_prometheus_config_loads_the_rules(tmp_path):
    # The image puts the rules at /etc/prometheus/rules; here they are read where they live.
    config = yaml.safe_load((ROOT / "observability" / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yaml"]
    config["rule_files"] = [str(RULES / "*.yaml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = promtool("check", "config", str(path))
    assert done.returncode == 0 and "SUCCESS: 2 rule files found" in done.stdout, done.stdout + done.stderr
    assert {job["job_name"]: job["dns_sd_configs"][0]["port"] for job in config["scrape_configs"]} == \
        {"vllm": 8000, "ascend-serve": Settings.model_fields["metrics_port"].default}


def test_routed_config_is_the_plain_one_plus_the_router():
    folder = ROOT / "observability" / "prometheus"
    plain, routed = (yaml.safe_load((folder / name).read_text()) for name in ("prometheus.yml", "routed.yml"))
    router = routed["scrape_configs"].pop()
    assert routed == plain
    assert router == {"job_name": "router", "static_configs": [{"targets": ["router:29000"]}]}
    # compose/router.yaml selects it with the image's own flags otherwise.
    command = yaml.load((ROOT / "compose" / "router.yaml").read_text(), ComposeLoader)["services"]["prometheus"]
    cmd = re.search(r"^CMD (\[.*?\])", (folder / "Dockerfile").read_text(), re.MULTILINE | re.DOTALL)
    assert cmd is not None
    image_flags = json.loads(cmd.group(1).replace("\\\n", ""))
    assert command["command"] == [flag.replace("prometheus.yml", "routed.yml") for flag in image_flags]


class ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags (!reset, !override) read as plain values."""


ComposeLoader.add_multi_constructor("!", lambda loader, _tag, node: loader.construct_scalar(node) if isinstance(
    node, yaml.ScalarNode) else (loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
                                 else loader.construct_mapping(node)))


@pytest.mark.parametrize("name", ["prometheus.yml", "routed.yml"])
def test_keyed_configs_are_the_plain_ones_sending_the_key_to_vllm(tmp_path, name):
    folder = ROOT / "observability" / "prometheus"
    plain, keyed = (yaml.safe_load(path.read_text()) for path in (folder / name, folder / "keyed" / name))
    vllm = next(job for job in keyed["scrape_configs"] if job["job_name"] == "vllm")
    assert vllm.pop("authorization") == {"type": "Bearer", "credentials_file": "/run/secrets/metrics_key"}
    assert keyed == plain
    # compose/metrics-key.yaml mounts them over the image's files and gives Prometheus the secret.
    override = yaml.load((ROOT / "compose" / "metrics-key.yaml").read_text(), ComposeLoader)
    assert f"../observability/prometheus/keyed/{name}:/etc/prometheus/{name}:ro" in \
        override["services"]["prometheus"]["volumes"]
    assert override["services"]["serve"]["environment"]["METRICS_NEED_KEY"] == "true"
    key = tmp_path / "metrics_key"
    key.write_text("sk-metrics-1a2b\n")
    vllm["authorization"] = {"type": "Bearer", "credentials_file": str(key)}
    keyed["rule_files"] = [str(RULES / "*.yaml")]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(keyed))
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
