"""bench/results/routing.md from a routing run (bench/routing.py): one table per workload, a row per
router policy and prefix-caching setting, and which combination serves each workload best."""

from __future__ import annotations

from typing import Any

Cells = list[dict[str, Any]]
NEAR = 0.9  # within 10%: on 2 shared cores, closer than that is one run's noise


def find(cells: Cells, workload: str, policy: str, prefix_caching: bool, clients: int) -> dict[str, Any] | None:
    for c in cells:
        if (c["workload"], c["policy"], c["prefix_caching"], c["concurrency"]) == (workload, policy, prefix_caching,
                                                                                     clients):
            return c
    return None


def text(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return " / ".join(str(v) for v in value)
    return f"{value}{unit}"


def row(cells: Cells, workload: str, policy: str, prefix_caching: bool) -> str | None:
    pair = [find(cells, workload, policy, prefix_caching, c) for c in (1, 8)]
    if not any(pair):
        return None
    values = [f"`{policy}`", "on" if prefix_caching else "off"]
    for key, unit in (("ttft_p50_s", ""), ("ttft_p99_s", ""), ("rps", ""), ("output_tps", ""),
                      ("hit_rate", ""), ("per_replica", ""), ("router_cpu_s", "")):
        values += [text(c.get(key) if c else None, unit) for c in pair]
    return "| " + " | ".join(values) + " |"


HEADER = ("| policy | prefix caching | TTFT p50 s c=1 | c=8 | TTFT p99 s c=1 | c=8 | req/s c=1 | c=8 | "
          "out tok/s c=1 | c=8 | hit rate c=1 | c=8 | requests per replica c=1 | c=8 | router CPU s c=1 | c=8 |")


def best(cells: Cells, workload: str) -> dict[str, Any] | None:
    """The combination with the most requests per second at c=8 on `workload`."""
    candidates = [c for c in cells if c["workload"] == workload and c["concurrency"] == 8 and c["rps"]]
    return max(candidates, key=lambda c: c["rps"]) if candidates else None


def name(c: dict[str, Any]) -> str:
    return f"`{c['policy']}` with prefix caching {'on' if c['prefix_caching'] else 'off'}"


def verdict(cells: Cells) -> list[str]:
    """Which combination wins chat traffic (shared system prompt, multi-turn) and what it gives up on random."""
    lines = []
    for workload in ("shared", "multiturn", "random"):
        top = best(cells, workload)
        if top:
            lines.append(f"- {workload}: most req/s at c=8: {name(top)} ({top['rps']} req/s, TTFT p50 "
                         f"{top['ttft_p50_s']} s, hit rate {text(top['hit_rate'])}, per replica "
                         f"{text(top['per_replica'])})")
    top, rand = best(cells, "shared"), best(cells, "random")
    same = top and find(cells, "random", top["policy"], top["prefix_caching"], 8)
    if top and rand and same:
        share = same["rps"] / rand["rps"]
        lines.append(f"- the shared-prompt winner on random prompts at c=8: {same['rps']} req/s, "
                     f"{share:.0%} of the best there ({name(rand)}: {rand['rps']}); "
                     f"{'no loss beyond the noise' if share >= NEAR else 'a loss beyond the noise'} "
                     f"(noise taken as {1 - NEAR:.0%})")
    return lines


def counts(requests: dict[Any, int]) -> str:
    """{1: 6, 8: 16} (or its JSON form, keys as text) as "6 at c=1, 16 at c=8"."""
    return ", ".join(f"{n} at c={c}" for c, n in sorted(requests.items(), key=lambda item: int(item[0])))


def markdown(result: dict[str, Any]) -> str:
    cells: Cells = result["cells"]
    policies = result.get("policies") or sorted({c["policy"] for c in cells})
    facts = result.get("machine", {})
    lines = ["# Routing: router policy x prefix caching, on the workloads operators send", "",
             f"Two CPU replicas (Gemma 3 270M test-bed weights, float32, eager; {text(facts.get('cpu'))}, "
             f"{text(facts.get('cores'))} cores shared with other jobs) behind vllm-router (the bundle's router image, "
             "compose/router/start.sh's flags), all cells in one run "
             f"({result.get('started', '?')} to {result.get('finished', 'unfinished')}). Requests per cell: "
             f"{counts(result.get('requests', {}))} (that many clients back to back), streamed chats of "
             f"{result.get('max_tokens')} output tokens, each session's id in X-Session-ID. `make bench-routing`.", "",
             "![c=8 TTFT, throughput, hit rate and the busiest replica's share per combination](routing.png)", "",
             "Workloads (text generated like vLLM's random dataset: random vocabulary ids, decoded; every cell "
             "from its own seed, so no cell hits another's cache):", "",
             *(f"- **{key}**: {value}" for key, value in result.get("workloads", {}).items()), ""]
    for workload in result.get("workloads", {}):
        rows = [row(cells, workload, p, pc) for pc in (False, True) for p in policies]
        lines += [f"## {workload}", "", HEADER, "|---" * 16 + "|", *(r for r in rows if r), ""]
    lines += ["## Best combination per workload", "", *verdict(cells), "",
              "Hit rate: prompt tokens found in the replicas' prefix caches over the tokens looked up, from the "
              "replicas' own vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total over the cell (no "
              "lookups with prefix caching off). Requests per replica: each replica's vllm:request_success_total "
              "over the cell. Router CPU: user + system seconds of the router's process over the cell. The "
              "machine is shared and the router runs on the replicas' 2 cores: compare cells within this run.", "",
              "What the defaults take from it, and why prefix caching was off: docs/scaling.md, \"Which router "
              "policy\".", ""]
    return "\n".join(lines)
