"""The router's policy crossed with the replicas' prefix caching, on the workloads operators send:
`make bench-routing`.

Two `entrypoint serve` replicas (CPU, fixture weights, eager) behind the router's image (on the
host network, compose/router/start.sh's flags, as bench/overload.py starts them), in one run:
for prefix caching off, then on (a restart of the pair), each router policy (a restart of the
router), each workload of bench/routing_workloads.py, at concurrency 1 and 8. Per cell: time to
first token p50/p99, requests and output tokens per second, the prefix-cache hit rate from each
replica's own vllm:prefix_cache_hits/queries counters, the requests each replica finished
(vllm:request_success_total) and the CPU seconds of the router's process. Every request carries
its session in X-Session-ID, which consistent_hash routes by (the others ignore it).
Results: bench/results/routing.{json,md,png}; `--report-only` redraws them from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, cpu_facts, write_report
from bench.overload import REPLICAS, replicas_up, router_image, router_up, tree_stat
from bench.routing_plot import plot
from bench.routing_report import markdown
from bench.routing_workloads import WORKLOADS, Session, Text, describe, sessions
from entrypoint.canary import summed
from testbed.fixture import SERVED_NAME, fixture_weights
from verification.client import sse_data
from verification.load import percentile

POLICIES = ("cache_aware", "round_robin", "consistent_hash")
ROUTER_POLICIES = ("cache_aware", "round_robin", "consistent_hash", "power_of_two", "random")  # vllm-router's
CONCURRENCY = (1, 8)
REQUESTS = {1: 6, 8: 16}  # per cell; multi-turn: that many turns, TURNS to a conversation
MAX_TOKENS = 16
REQUEST_TIMEOUT = 300.0
# The ports this bench may use: the replicas', the router's and its metrics'.
REPLICA_PORTS = [18601, 18602]
ROUTER_PORTS = (18610, 18611)
MODEL = SERVED_NAME


def serve_settings(prefix_caching: bool) -> dict[str, str]:
    """Over bench/overload.py's replica settings: room for a 1k-token system prompt or a history, a batch of 8."""
    # No canary: its completions every 10 s would count as requests and load beside the cells'.
    return {"MAX_MODEL_LEN": "4096", "MAX_NUM_SEQS": "8", "MAX_NUM_BATCHED_TOKENS": "1024", "CANARY_INTERVAL": "0",
            "VLLM_CPU_KVCACHE_SPACE": "2", "ENABLE_PREFIX_CACHING": "true" if prefix_caching else "false"}


def chat(url: str, session: Session, turn: int) -> dict[str, Any]:
    """One streamed turn: status, time to first token, prompt and output tokens; the reply joins the history."""
    body = {"model": MODEL, "messages": session.messages(turn), "max_tokens": MAX_TOKENS, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    began, first, reply, usage = time.monotonic(), None, [], {}
    try:
        with requests.post(f"{url}/v1/chat/completions", json=body, headers={"X-Session-ID": session.sid},
                           stream=True, timeout=REQUEST_TIMEOUT) as answer:
            if answer.status_code == 200:
                for event in sse_data(answer.iter_lines()):
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        if choice.get("delta", {}).get("content"):
                            first = first if first is not None else time.monotonic() - began
                            reply.append(choice["delta"]["content"])
            status: int | str = answer.status_code
    except requests.RequestException as exc:
        status = type(exc).__name__
    session.answered(turn, "".join(reply))
    return {"status": status, "ttft": first, "seconds": time.monotonic() - began,
            "prompt_tokens": usage.get("prompt_tokens"), "output_tokens": usage.get("completion_tokens", 0)}


def drive(url: str, work: list[Session], clients: int) -> tuple[list[dict[str, Any]], float]:
    """`clients` clients, each taking the next session and sending its turns one after another."""
    queue, answers = list(reversed(work)), []

    def client() -> None:
        while queue:
            try:
                session = queue.pop()
            except IndexError:
                return
            for turn in range(len(session.turns)):
                answers.append(chat(url, session, turn))

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return answers, time.monotonic() - began


COUNTED = ("prefix_cache_hits", "prefix_cache_queries", "request_success")


def counters(replica: str) -> dict[str, float]:
    """The replica's prefix-cache hits and queries (tokens) and finished requests, summed over their labels."""
    sums = summed(requests.get(f"{replica}/metrics", timeout=10).text, {f"vllm:{name}_total" for name in COUNTED})
    return {name.removeprefix("vllm:").removesuffix("_total"): value for name, value in sums.items()}


def cpu_seconds(root: int) -> float:
    """User and system CPU seconds of `root` and its descendants (every thread's included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[11]) + int(fields[12]) for fields in tree_stat(root).values()) / ticks


def cell(url: str, replicas: list[str], router_pid: int, work: list[Session], clients: int) -> dict[str, Any]:
    """One cell: the load, and what the replicas' counters and the router's CPU time moved by during it."""
    before, cpu = [counters(r) for r in replicas], cpu_seconds(router_pid)
    answers, wall = drive(url, work, clients)
    cpu = cpu_seconds(router_pid) - cpu
    moved = [{k: after.get(k, 0.0) - was.get(k, 0.0) for k in COUNTED}
             for was, after in zip(before, [counters(r) for r in replicas], strict=True)]
    ok = [a for a in answers if a["status"] == 200]
    ttfts = sorted(a["ttft"] for a in ok if a["ttft"] is not None)
    queries = sum(m["prefix_cache_queries"] for m in moved)
    prompts = [a["prompt_tokens"] for a in ok if a["prompt_tokens"]]
    return {"requests": len(answers), "completed": len(ok), "seconds": round(wall, 2),
            "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
            "ttft_p99_s": round(percentile(ttfts, 99), 3) if ttfts else None,
            "rps": round(len(ok) / wall, 3), "output_tps": round(sum(a["output_tokens"] for a in ok) / wall, 1),
            "prompt_tokens_mean": round(statistics.mean(prompts)) if prompts else None,
            "hit_rate": round(sum(m["prefix_cache_hits"] for m in moved) / queries, 3) if queries else None,
            "per_replica": [round(m["request_success"]) for m in moved], "router_cpu_s": round(cpu, 3)}


def policy_cells(text: Text, urls: list[str], policy: str, prefix_caching: bool) -> list[dict[str, Any]]:
    """Every workload at every concurrency behind one fresh router."""
    results = []
    with router_up(urls, {}, policy, ROUTER_PORTS, "routing-router") as (url, _metrics, pid):
        for workload in WORKLOADS:
            for clients in CONCURRENCY:
                seed = len(RUN["cells"]) + 1000 * prefix_caching
                measured = cell(url, urls, pid, sessions(text, workload, REQUESTS[clients], seed), clients)
                results.append({"workload": workload, "policy": policy, "prefix_caching": prefix_caching,
                                "concurrency": clients, **measured})
                RUN["cells"].append(results[-1])
                save_partial()
                print(f"routing: {workload} {policy} prefix_caching={prefix_caching} c={clients}: "
                      f"{json.dumps(measured)}", flush=True)
    return results


RUN: dict[str, Any] = {"cells": []}
PARTIAL = RESULTS / "routing.partial.json"


def save_partial() -> None:
    """The cells so far, so that a run stopped part way still leaves what it measured."""
    PARTIAL.write_text(json.dumps(RUN, indent=1) + "\n")


def run(policies: tuple[str, ...], prefix_modes: tuple[bool, ...]) -> dict[str, Any]:
    weights = fixture_weights()
    router_image()
    text = Text(weights)
    RUN.update({"machine": cpu_facts(), "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "workloads": describe(), "requests": REQUESTS, "max_tokens": MAX_TOKENS,
                "settings": {str(p): serve_settings(p) for p in prefix_modes}, "policies": list(policies)})
    for prefix_caching in prefix_modes:
        with replicas_up(weights, REPLICAS, False, None, serve_settings(prefix_caching),
                         REPLICA_PORTS) as (urls, _children, _states):
            warm(text, urls)
            for policy in policies:
                policy_cells(text, urls, policy, prefix_caching)
    RUN["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return RUN


def warm(text: Text, urls: list[str]) -> None:
    """One long prompt straight to each replica, so that no cell pays a replica's first long prefill."""
    for n, url in enumerate(urls):
        chat(url, sessions(text, "shared", 1, seed=10_000 + n)[0], 0)


def report(result: dict[str, Any]) -> None:
    write_report("routing", result, markdown(result))
    plot(result, RESULTS / "routing.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", type=Path, metavar="JSON", help="redraw the report from a run's JSON")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated router policies")
    parser.add_argument("--prefix-caching", default="off,on", help="off, on, or off,on")
    parser.add_argument("--requests", default=f"{REQUESTS[1]},{REQUESTS[8]}", help="requests per cell at c=1,c=8")
    args = parser.parse_args(argv)
    if args.report_only:
        report(json.loads(args.report_only.read_text()))
        return 0
    modes, policies = {"off": False, "on": True}, tuple(args.policies.split(","))
    if not set(args.prefix_caching.split(",")) <= set(modes):
        print(f"routing: --prefix-caching={args.prefix_caching} is not allowed: off, on or off,on", file=sys.stderr)
        return 2
    if not set(policies) <= set(ROUTER_POLICIES):
        print(f"routing: --policies={args.policies} is not allowed: some of {', '.join(ROUTER_POLICIES)}",
              file=sys.stderr)
        return 2
    counts = args.requests.split(",")
    if len(counts) != 2 or not all(c.isdigit() and int(c) > 0 for c in counts):
        print(f"routing: --requests={args.requests} is not allowed: two whole numbers, c=1's and c=8's",
              file=sys.stderr)
        return 2
    REQUESTS.update(zip(CONCURRENCY, map(int, counts), strict=True))
    report(run(policies, tuple(modes[m] for m in args.prefix_caching.split(","))))
    PARTIAL.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
