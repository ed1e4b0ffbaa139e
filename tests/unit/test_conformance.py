"""Every NPU and CUDA render is a command the target image's own vLLM accepts.

For each supported image (templates/images.yaml), the vLLM that image carries parses
the renders with its own `vllm serve` parser and builds its EngineArgs; the compilation
config is built as that version's CompilationConfig; additional-config keys and every
exported variable are checked against that version's vLLM and vllm-ascend sources. The
renders cover the default, every variant, every model profile and generated settings.
The target vLLMs come from scripts/testbed/target-vllm.sh (cached; `make test-unit` makes them).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.default_layers import SUPPORTED_IMAGES, TEMPLATES_DIR, profile_names, variant_names
from entrypoint.errors import SettingsError
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from testbed.paths import BUNDLE_CACHE

ROOT = Path(__file__).parents[2]
PROBE = ROOT / "testbed" / "target_vllm_probe.py"
ACCELERATORS = ("npu", "cuda")
MODEL_PATH = "/models/weights/gemma-3-270m-it"
# One model over two LeaderWorkerSet nodes: TP within each node, PP across them
# (deploy/kubernetes/examples/gemma-3-27b-npu-lws), as the leader and a worker render it.
LWS_GROUP = {"LWS_GROUP_SIZE": "2", "LWS_LEADER_ADDRESS": "gemma-0.gemma.serving", "TENSOR_PARALLEL_SIZE": "2",
             "PIPELINE_PARALLEL_SIZE": "2", "MULTI_NODE_PORT": "29501"}
LWS_ROLES = {"leader": "0", "worker": "1"}


def named_renders(image: str) -> dict[str, dict[str, object]]:
    """Default, every variant and every profile, on each accelerator, for one image version."""
    cases: dict[str, dict[str, str]] = {}
    for platform in ACCELERATORS:
        base = {"PLATFORM": platform, "IMAGE_VERSION": image}
        cases[platform] = base
        for variant in variant_names(TEMPLATES_DIR, platform):
            cases[f"{platform}/{variant}"] = {**base, "PLATFORM_VARIANT": variant}
        for profile in profile_names(TEMPLATES_DIR):
            cases[f"{platform}+{profile}"] = {**base, "MODEL_PROFILE": profile}
        for role, index in LWS_ROLES.items():
            cases[f"{platform} lws {role}"] = {**base, **LWS_GROUP, "LWS_WORKER_INDEX": index}
        # The API guard through --middleware: an inline key, then admission control with a bound per key.
        cases[f"{platform} api guard"] = {**base, "API_KEY": "sk-conformance-1", "METRICS_NEED_KEY": "true"}
        cases[f"{platform} admission"] = {**base, "API_KEY": "sk-conformance-1", "ADMISSION_CONTROL": "true",
                                          "ADMIT_MAX_PER_KEY": "4"}
    return {name: render(environ) for name, environ in cases.items()}


def render(environ: dict[str, str]) -> dict[str, object]:
    command = render_command(load_settings(environ), MODEL_PATH)
    return {"argv": command.argv, "env": command.env}


USER_SETTINGS = st.fixed_dictionaries({}, optional={
    "MAX_NUM_SEQS": st.integers(1, 1024).map(str),
    "MAX_MODEL_LEN": st.integers(16, 131072).map(str),
    "MAX_NUM_BATCHED_TOKENS": st.integers(1024, 65536).map(str),
    "TENSOR_PARALLEL_SIZE": st.sampled_from(["1", "2", "4", "8"]),
    "DATA_PARALLEL_SIZE": st.sampled_from(["1", "2"]),
    "SEED": st.integers(0, 2**31).map(str),
    "GPU_MEMORY_UTILIZATION": st.sampled_from(["0.5", "0.85", "0.9", "0.95", "1"]),
    "ENABLE_PREFIX_CACHING": st.sampled_from(["true", "false"]),
    "TRUST_REMOTE_CODE": st.sampled_from(["true", "false"]),
    "DTYPE": st.sampled_from(["auto", "bfloat16", "float16", "float32"]),
    "ENFORCE_EAGER": st.sampled_from(["true", "false"]),
    "ENABLE_CHUNKED_PREFILL": st.sampled_from(["true", "false"]),
    "SHUTDOWN_TIMEOUT": st.integers(0, 25).map(str),
    "COMPILATION_CONFIG": st.sampled_from(['{"cudagraph_mode":"FULL_DECODE_ONLY"}', '{"cudagraph_mode":"PIECEWISE"}',
                                           '{"cudagraph_mode":"FULL_AND_PIECEWISE"}', '{"cudagraph_mode":"NONE"}']),
    "HOST": st.sampled_from(["0.0.0.0", "127.0.0.1", "::"]),
    "PORT": st.integers(1, 65535).map(str),
    "PIPELINE_PARALLEL_SIZE": st.sampled_from(["1", "2", "4"]),
    "SERVED_MODEL_NAME": st.from_regex(r"[a-z][a-z0-9._-]{0,30}", fullmatch=True),
})


def generated_renders(image: str, count: int) -> dict[str, dict[str, object]]:
    """`count` renders of settings hypothesis draws; values the settings refuse are skipped."""
    renders: dict[str, dict[str, object]] = {}

    @settings(max_examples=count, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(platform=st.sampled_from(ACCELERATORS), user=USER_SETTINGS)
    def collect(platform: str, user: dict[str, str]) -> None:
        environ = {"PLATFORM": platform, "IMAGE_VERSION": image, **user}
        with contextlib.suppress(SettingsError):
            renders[f"generated {json.dumps(environ, sort_keys=True)}"] = render(environ)

    collect()
    return renders


def target_overlay(vllm_version: str) -> Path:
    """The cached target vLLM; provisioned by `make test-unit`, built here if missing."""
    folder = BUNDLE_CACHE / f"target-vllm-{vllm_version}"
    if not (folder / ".complete").exists():
        subprocess.run([str(ROOT / "scripts" / "testbed" / "target-vllm.sh"), vllm_version], check=True,
                       env={**os.environ, "BUNDLE_CACHE": str(BUNDLE_CACHE)}, stdout=subprocess.DEVNULL)
    return folder


def parse_with_target(vllm_version: str, renders: dict[str, dict[str, object]]) -> dict[str, object]:
    """The probe's answer for these renders under that vLLM."""
    overlay = target_overlay(vllm_version)
    request = {"renders": [{"name": name, **r} for name, r in renders.items()],
               "ascend_source": str(overlay / "ascend")}
    env = {key: value for key, value in os.environ.items() if not key.startswith("VLLM_")}
    result = subprocess.run([sys.executable, str(PROBE)], input=json.dumps(request), capture_output=True,
                            text=True, env={**env, "PYTHONPATH": f"{overlay / 'site'}:{ROOT}"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def renders_for(image: str) -> dict[str, dict[str, object]]:
    return {**named_renders(image), **generated_renders(image, 40)}


@pytest.mark.parametrize("image", sorted(SUPPORTED_IMAGES))
def test_every_render_parses_with_the_images_vllm(image):
    vllm_version = SUPPORTED_IMAGES[image].vllm
    answer = parse_with_target(vllm_version, renders_for(image))
    assert answer["version"] == vllm_version
    problems = [f"vLLM {vllm_version} ({image}): {f['what']}: {f['message']}  [render: {f['render']}]"
                for f in answer["failures"]]
    assert not problems, "\n".join(problems)


def test_renders_cover_every_variant_and_profile():
    names = set(renders_for(next(iter(SUPPORTED_IMAGES))))
    for platform in ACCELERATORS:
        assert {f"{platform}/{v}" for v in variant_names(TEMPLATES_DIR, platform)} <= names
        assert {f"{platform}+{p}" for p in profile_names(TEMPLATES_DIR)} <= names
        assert {f"{platform} lws {role}" for role in LWS_ROLES} <= names
        assert {f"{platform} api guard", f"{platform} admission"} <= names
    assert sum(name.startswith("generated") for name in names) >= 20
