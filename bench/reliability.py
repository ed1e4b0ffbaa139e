"""The reliability figures: faults injected and survived, bad inputs rejected, requests
under load with probe failures and latency, secrets scanned for.

1. Runs the reliability tests (hub faults, shared cache, startup failures, crashes and
   stops, hung engine, secrets, bad settings, settings fuzz) and lists each outcome.
2. Starts the bundle (CPU profile, fixture weights, an API key and a hub token set to
   random values), runs vLLM's `bench serve` at concurrency 32 for a few minutes while
   `healthcheck ready` and `live` run every second.
3. Greps everything an outsider could read for the two secrets: the serve log, the
   state folder, `render` and `settings` output, and every server process's command line.
4. Runs the hostile-input table (bench/hostile.py): corrupt state folders and bad command
   lines, each in a fresh process, with the worst wall time and peak memory per kind.

Writes bench/reliability.{json,md}. Usage:
    python bench/reliability.py [--prompts 160] [--concurrency 32] [--skip-tests | --junit-dir .run/junit]
    python bench/reliability.py --hostile-only   # just step 4, into the existing report
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import hostile  # noqa: E402
from bench.common import bundle_server, wait_bundle, write_report  # noqa: E402
from entrypoint.child import ChildProcess  # noqa: E402
from entrypoint.resolver import load_settings  # noqa: E402
from testbed.fixture import fixture_weights, served_fixture  # noqa: E402
from testbed.net import free_port  # noqa: E402
from testbed.paths import COMPILE_CACHE  # noqa: E402
from testbed.servers import NETGUARD  # noqa: E402
from verification.load import LoadPlan, run_load_with_probes  # noqa: E402
from verification.runs import machine_facts  # noqa: E402

SUITES = {
    "faults injected": ["tests/integration/test_hub_faults.py", "tests/integration/test_shared_cache.py",
                        "tests/integration/test_server_lifecycle.py",
                        "tests/integration/test_startup_failures.py"],
    "bad inputs": ["tests/unit/test_settings.py", "tests/unit/test_settings_fuzz.py", "tests/unit/test_secrets.py"],
    "secrets": ["tests/integration/test_secrets.py"],
}


def run_suite(files: list[str], junit: Path) -> list[dict[str, Any]]:
    """Run test files with pytest; one row per test case from its JUnit XML."""
    present = [f for f in files if (ROOT / f).exists()]
    if not present:
        return []
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *present],
                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    return junit_rows([junit], files)


def junit_rows(reports: list[Path], files: list[str]) -> list[dict[str, Any]]:
    """One row per test case of the given test files, from JUnit XML reports."""
    modules = {f.removesuffix(".py").replace("/", ".") for f in files}
    rows = []
    for report in reports:
        for case in ET.parse(report).getroot().iter("testcase"):
            classname = case.get("classname", "")
            module = next((m for m in modules if classname == m or classname.startswith(m + ".")), None)
            if module is None:
                continue
            outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else \
                "skipped" if case.find("skipped") is not None else "passed"
            rows.append({"file": module.rsplit(".", 1)[-1], "test": case.get("name"), "outcome": outcome,
                         "seconds": round(float(case.get("time", 0)), 1)})
    return rows


def start_bundle(workdir: Path, weights: str, port: int, api_key: str, hub_token: str
                 ) -> AbstractContextManager[ChildProcess]:
    """`entrypoint serve` with the CPU defaults on the fixture weights and both secrets set, behind the
    network guard."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(NETGUARD), **bundle_settings(workdir, weights, port, COMPILE_CACHE),
           "API_KEY": api_key, "MODELSCOPE_TOKEN": hub_token}
    return bundle_server(env, workdir / "serve.log")


def bundle_settings(workdir: Path, weights: str, port: int, compile_cache: Path) -> dict[str, str]:
    """The settings of the server under load: the CPU render with the fixture's profile."""
    return {"PLATFORM": "cpu", "HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": "0", **served_fixture(weights),
            "MODEL_CACHE_DIR": str(workdir / "cache"),
            "COMPILE_CACHE_DIR": str(compile_cache), "STATE_DIR": str(workdir / "state")}


def group_cmdlines(pgid: int) -> list[str]:
    """Command lines of every process in a process group (what `ps` shows any user)."""
    lines = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                lines.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return lines


def scan_for_secrets(workdir: Path, pgid: int, env: dict[str, str], secrets_: list[str]) -> dict[str, Any]:
    """Where each secret shows up: logs, state files, render/settings output, command lines."""
    cli = {name: subprocess.run([sys.executable, "-m", "entrypoint", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True).stdout
           for name, args in {"render": ["render"], "settings": ["settings"]}.items()}
    places = {"serve log": (workdir / "serve.log").read_text(errors="replace"),
              "state folder": "\n".join(p.read_text(errors="replace") for p in (workdir / "state").glob("*")
                                        if p.is_file()),
              "render output": cli["render"], "settings output": cli["settings"],
              "process command lines": "\n".join(group_cmdlines(pgid))}
    found = {place: sum(text.count(secret) for secret in secrets_) for place, text in places.items()}
    return {"places": found, "total": sum(found.values()), "processes_scanned": len(group_cmdlines(pgid))}


def load_and_scan(args: argparse.Namespace) -> dict[str, Any]:
    """Start the bundle, load it while probing, then scan for its secrets."""
    api_key, hub_token = f"sk-bench-{secrets.token_hex(12)}", f"ms-bench-{secrets.token_hex(12)}"
    weights, port = args.model_path or str(fixture_weights()), free_port()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        workdir = Path(tmp)
        with start_bundle(workdir, weights, port, api_key, hub_token) as server:
            ready_s = wait_bundle(workdir / "state", server, workdir / "serve.log", poll=1.0)
            plan = LoadPlan(concurrency=args.concurrency, num_prompts=args.prompts, input_len=args.input_len,
                            output_len=args.output_len)
            settings = load_settings(bundle_settings(workdir, weights, port, COMPILE_CACHE))
            load = run_load_with_probes(settings.base_url, settings.served_model_name, weights, workdir / "state",
                                        plan, api_key=api_key)
            env = {**os.environ, "PYTHONPATH": str(ROOT), "API_KEY": api_key, "MODELSCOPE_TOKEN": hub_token,
                   **bundle_settings(workdir, weights, port, Path(tmp) / "compile-cache")}
            scan = scan_for_secrets(workdir, server.pid, env, [api_key, hub_token])
    return {"ready_s": round(ready_s, 1), "load": load, "secrets": scan}


def markdown(result: dict[str, Any]) -> str:
    """The report."""
    out = [f"# Reliability report\n\nDate {result['date']}, commit `{result['commit']}`, "
           f"{result['machine']['cpu']} ({result['machine']['cores']} cores). Test outcomes: "
           f"{result.get('tests_from', 'run by this benchmark')}.\n"]
    for suite, rows in result["suites"].items():
        passed = sum(r["outcome"] == "passed" for r in rows)
        out.append(f"## {suite.capitalize()}: {passed} of {len(rows)} passed\n\n| test | file | outcome | s |\n"
                   "|---|---|---|---|")
        out += [f"| {r['test']} | {r['file']} | {r['outcome']} | {r['seconds']} |" for r in rows]
        out.append("")
    if "load" in result:
        load, req = result["load"]["load"], result["load"]["load"]["requests"]
        out.append(f"## Requests under load\n\nvLLM `bench serve`, {load['plan']['num_prompts']} requests, "
                   f"concurrency {load['plan']['concurrency']}, {load['plan']['input_len']} in / "
                   f"{load['plan']['output_len']} out, {load['seconds']} s; probes every second.\n\n"
                   f"- requests: {req['completed']} completed, {req['failed']} failed "
                   f"(success rate {req['success_rate']:.2%}); {req['output_tokens_per_s']:.1f} output tok/s\n")
        out.append("| probe | calls | failures | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|")
        out += [f"| {name} | {p['calls']} | {p['failures']} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |"
                for name, p in load["probes"].items()]
        scan = result["load"]["secrets"]
        out.append(f"\n## Secrets scanned\n\nAn API key and a hub token (random values) were set; found "
                   f"**{scan['total']}** times in total ({scan['processes_scanned']} process command lines):\n")
        out += [f"- {place}: {count}" for place, count in scan["places"].items()]
    if "hostile" in result:
        out.append("\n" + hostile.markdown(result["hostile"]))
    if "round_three" in result:
        out.append("\n" + hostile.round_three_markdown(result["round_three"]))
    return "\n".join(out) + "\n"


def commit_id() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


def hostile_section() -> dict[str, Any]:
    print("reliability: the hostile-input table", file=sys.stderr)
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit_id(),
            **hostile.run_hostile()}


def round_three_section() -> dict[str, Any]:
    print("reliability: hostile input, round three", file=sys.stderr)
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit_id(),
            **hostile.run_round_three()}


def hostile_only(sections: dict[str, Any]) -> None:
    """Rerun only the hostile-input tables named and put them into the existing report."""
    report = ROOT / "bench" / "reliability.json"
    result = json.loads(report.read_text()) if report.exists() else {
        "date": "-", "commit": commit_id(), "machine": machine_facts(), "suites": {}}
    result.update({name: make() for name, make in sections.items()})
    write_report("reliability", result, markdown(result), folder=ROOT / "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=160)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--input-len", type=int, default=200)
    parser.add_argument("--output-len", type=int, default=100)
    parser.add_argument("--model-path")
    parser.add_argument("--skip-tests", action="store_true", help="only the load and the secret scan")
    parser.add_argument("--junit-dir", type=Path, help="take the test outcomes from the JUnit XML files a "
                        "`make test` left there (e.g. .run/junit) instead of running the tests again")
    parser.add_argument("--skip-load", action="store_true", help="only the tests")
    parser.add_argument("--hostile-only", action="store_true",
                        help="only the hostile-input tables, written into the existing report")
    parser.add_argument("--round-three-only", action="store_true",
                        help="only the round-three table (the edges around the settings), into the existing report")
    args = parser.parse_args()
    if args.hostile_only or args.round_three_only:
        hostile_only({"round_three": round_three_section} if args.round_three_only else
                     {"hostile": hostile_section, "round_three": round_three_section})
        return
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit_id(),
                              "machine": machine_facts(), "suites": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for suite, files in ({} if args.skip_tests else SUITES).items():
            if args.junit_dir:
                result["tests_from"] = f"the JUnit files of a `make test` run ({args.junit_dir})"
                result["suites"][suite] = junit_rows(sorted(args.junit_dir.glob("*.xml")), files)
                continue
            print(f"reliability: running {suite} tests", file=sys.stderr)
            result["suites"][suite] = run_suite(files, Path(tmp) / "junit.xml")
    if not args.skip_load:
        print("reliability: load with probes, then the secret scan", file=sys.stderr)
        result["load"] = load_and_scan(args)
    result["hostile"] = hostile_section()
    result["round_three"] = round_three_section()
    write_report("reliability", result, markdown(result), folder=ROOT / "bench")


if __name__ == "__main__":
    main()
