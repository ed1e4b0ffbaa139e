"""`make up` / `docker compose run --rm smoke` / `make down` on a real Docker engine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from entrypoint.state import DEFAULT_STATE_DIR, READY_FILE, STATE_FILE
from tests.container.conftest import ROOT, docker, files_under, inductor_folder, make
from tests.support.guide_checks import assert_guide_smoke_requests


def test_make_up_returns_only_when_docker_says_healthy(deployment):
    assert deployment.up_result.returncode == 0
    assert deployment.inspect()["State"]["Health"]["Status"] == "healthy"
    assert f"http://127.0.0.1:{deployment.port}" in deployment.up_result.stdout


SEEDED = re.compile(r"compile cache: copied the image's (\S+) cache \((\d+) files")


def test_a_first_start_on_a_fresh_volume_is_warm_from_the_images_cache(deployment):
    # `make up WARM=1` built the image with warmed caches (`make image-warm`); the session's
    # compile cache started empty, as a new volume's does.
    done = subprocess.run(["docker", "logs", deployment.container()], capture_output=True, text=True, timeout=60)
    seeded = SEEDED.search(done.stdout + done.stderr)
    assert seeded, "the first start did not copy the image's compile cache:\n" + done.stderr[-3000:]
    key = seeded.group(1)
    shipped = deployment.exec("sh", "-c", "ls /opt/bundle/compile-cache").split()
    assert {"avx2", key} <= set(shipped), shipped  # WARM_ISAS' default: this CPU's and AVX2's

    def kernels(folder: str) -> list[str]:
        return [name[len(folder) + 1:] for name in files_under(deployment, folder) if name.endswith(".so")]

    image_kernels = kernels(f"/opt/bundle/compile-cache/{key}/torchinductor")
    volume_kernels = kernels(inductor_folder(deployment))
    assert image_kernels and volume_kernels == image_kernels, "the first start compiled kernels the image did not ship"
    state = json.loads(deployment.exec("cat", str(DEFAULT_STATE_DIR / STATE_FILE)))
    ready = json.loads(deployment.exec("cat", str(DEFAULT_STATE_DIR / READY_FILE)))
    # Into the JUnit file's system-out (pyproject.toml's junit_logging), for bench/ci_time.py's readers.
    print(f"\nfirst start on a fresh volume from the image's {key} cache: vLLM ready "
          f"{ready['server_answered_at'] - state['server_started_at']:.1f} s after its spawn; "
          f"`make up WARM=1` took {deployment.up_seconds:.1f} s (image builds included)")


def test_compose_smoke_service_passes(deployment):
    done = make("smoke", *deployment.vars)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke OK" in done.stdout


def test_plain_docker_compose_at_the_checkout_root_reaches_the_deployment(deployment):
    # The design's commands as typed, after `make up`: no -f, no -p, no variables.
    compose = {"cwd": ROOT, "capture_output": True, "text": True, "timeout": 600,
               "env": {k: v for k, v in os.environ.items() if k not in ("PLATFORM", "PORT", "COMPOSE_FILE")}}
    before = deployment.inspect()["Id"]
    smoke = subprocess.run(["docker", "compose", "run", "--rm", "smoke"], **compose)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "smoke OK" in smoke.stdout
    assert deployment.inspect()["Id"] == before  # the running server was used, not recreated
    ps = subprocess.run(["docker", "compose", "ps", "--format", "{{.Service}} {{.Health}}"], **compose)
    assert "serve healthy" in ps.stdout, ps.stdout + ps.stderr
    logs = subprocess.run(["docker", "compose", "logs", "--no-color", "serve"], **compose)
    assert "effective settings {" in logs.stdout + logs.stderr


def test_make_up_showed_the_start_phases(deployment):
    # Not a terminal here: plain `[phase] ...` lines from `entrypoint watch`, then Docker's health.
    out = deployment.up_result.stdout
    assert "[vllm] vLLM loading and compiling" in out and "[ready] " in out, out[-3000:]


def test_guide_smoke_requests_on_the_published_port(deployment):
    assert_guide_smoke_requests(deployment.url)


def test_runs_as_a_non_root_user_with_an_init(deployment):
    container = deployment.container()
    assert docker("exec", container, "id", "-u").strip() == "1000"
    assert "tini" in docker("exec", container, "cat", "/proc/1/cmdline")


def test_effective_settings_are_logged_once_as_json(deployment):
    done = subprocess.run(["docker", "logs", deployment.container()], capture_output=True, text=True, timeout=60)
    logs = done.stdout + done.stderr  # the supervisor logs to stderr, vLLM to stdout
    lines = [line for line in (logs + "\n").splitlines() if "effective settings {" in line]
    assert len(lines) == 1 and '"PLATFORM": "cpu"' in lines[0]


def test_serve_runs_hardened(deployment):
    host = deployment.inspect()["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert deployment.health() == "healthy"


def test_cache_owned_by_another_user_is_one_clear_line(deployment, tmp_path):
    # A host folder the image's uid 1000 cannot write, as a bind-mounted cache often is.
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chown(cache, 4242, 4242)
    cache.chmod(0o700)
    image = deployment.inspect()["Config"]["Image"]
    done = subprocess.run(["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                           "--security-opt", "no-new-privileges", "-v", f"{cache}:/models", image],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "MODEL_CACHE_DIR=/models" in lines[0] and "uid 4242" in lines[0] and "chown" in lines[0]


@pytest.mark.timeout(2 * 1800 + 300)  # two tool runs, each bounded at 1800 s
def test_compose_bench_and_eval_services_write_their_reports(deployment):
    # The guide's tools in their own containers against `serve`; reports on the host. What is tested
    # is each service, not the figures: the smallest runs the tools take (one `vllm bench serve`; two
    # determinism rounds and float32 parity, whose pooling runner is an in-process engine in the
    # operator's layout), eager, since torch.compile is `serve`'s subject (the restart test checks it).
    run = f"container-{deployment.project}"
    folder = ROOT / "perf_results" / run
    try:
        bench = make("bench", *deployment.vars, "BENCH_ARGS=--preset quick --only online --bandwidth-seconds 0.5 "
                     f"--run-name {run}", timeout=1800)
        assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
        perf = json.loads((folder / "perf.json").read_text())
        assert perf["results"]["online"]["output_throughput"] > 0
        assert sorted(p.name for p in folder.glob("*.png"))
        evaluation = make("eval", *deployment.vars, "EVAL_ARGS=--quick --rounds 2 --parity-dtypes float32 "
                          f"--engine-args=--enforce-eager --run-name {run}", timeout=1800)
        assert evaluation.returncode == 0, evaluation.stdout[-3000:] + evaluation.stderr[-3000:]
        accuracy = json.loads((folder / "accuracy.json").read_text())
        assert accuracy["determinism"]["passed"] is True
        assert "enforce_eager=True" in accuracy["parity"]["by_dtype"]["float32"]["hidden_states"]["source"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_image_layers_and_config_hold_no_secret(deployment):
    # Secrets are runtime files or variables only: no layer's command and no baked-in ENV names one.
    image = deployment.inspect()["Config"]["Image"]
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
    env = json.loads(docker("image", "inspect", image))[0]["Config"]["Env"] or []
    for name in ("API_KEY", "VLLM_API_KEY", "MODELSCOPE_TOKEN", "OPENAI_API_KEY"):
        assert f"{name}=" not in history
        assert not [item for item in env if item.startswith(f"{name}=")]
    # A secret given at run time stays out of what the container prints about itself.
    secret = "sk-layer-probe-5e1d"
    done = subprocess.run(["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "-e", f"API_KEY={secret}",
                           image, "settings"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr and '"API_KEY": "***"' in done.stdout
