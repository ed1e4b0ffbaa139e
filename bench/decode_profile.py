"""Where one decode step's time goes: vLLM in-process with torch.profiler, beside a pure-torch GEMV floor.

Run by bench/profiles.py as a subprocess with a candidate's rendered environment (its
thread binding and compile cache), so it measures the same engine configuration as the
server, minus HTTP and the separate engine process:

- `kernel_floor`: every weight matrix of the checkpoint multiplied by one token's vector
  (batch 1), in the served dtype, on the same threads: what the matmul kernels alone
  reach per decode step, and the memory bandwidth that is;
- `engine_step`: `vllm.LLM` with the engine core in this process
  (VLLM_ENABLE_V1_MULTIPROCESSING=0): one decode step's wall time from two timed
  generations (1 and 1+N tokens), then torch.profiler (CPU) around the N-token one:
  the top operators by self CPU time, grouped into GEMM, attention, sampling and the rest,
  and the time no operator accounts for (Python, scheduler, input preparation).

Usage: python bench/decode_profile.py --model DIR --out FILE.json -- <engine flags of the server>
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from entrypoint.engine_flags import kwargs_from_flags  # noqa: E402

GROUPS = (  # first match wins; names are torch/oneDNN/vLLM operator names, lower-cased
    ("gemm", ("mm", "linear", "gemm", "matmul", "onednn", "brgemm", "dnnl")),
    ("attention", ("attention", "attn", "paged", "reshape_and_cache", "flash")),
    ("sampling", ("sample", "topk", "top_k", "argmax", "softmax", "multinomial", "logits", "sort")),
    ("norm/activation", ("norm", "gelu", "silu", "rotary", "rope", "mul", "add", "tanh")),
)


def group_of(name: str) -> str:
    """The group an operator name belongs to (see GROUPS), 'other' when none."""
    lowered = name.lower()
    return next((group for group, needles in GROUPS if any(n in lowered for n in needles)), "other")


def engine_kwargs(flags: list[str]) -> dict[str, Any]:
    """`--max-model-len 4096 --no-enable-prefix-caching --trust-remote-code` -> LLM keyword arguments,
    read with the server's own flag table (entrypoint.engine_flags)."""
    return kwargs_from_flags(flags)


def kernel_floor(model_dir: Path, dtype: str, seconds: float = 5.0) -> dict[str, Any]:
    """Best time of one pass of batch-1 matmuls over every 2-D weight (the embedding as the LM head)."""
    import torch
    from safetensors.torch import load_file

    torch_dtype = getattr(torch, dtype)
    weights = []
    for path in sorted(model_dir.glob("*.safetensors")):
        weights += [t.to(torch_dtype).contiguous() for t in load_file(str(path)).values() if t.dim() == 2]
    vectors = [torch.randn(1, w.shape[1], dtype=torch_dtype) for w in weights]
    nbytes = sum(w.numel() * w.element_size() for w in weights)
    best, passes = float("inf"), 0
    deadline = time.perf_counter() + seconds
    with torch.inference_mode():
        while passes < 3 or time.perf_counter() < deadline:
            start = time.perf_counter()
            for weight, vector in zip(weights, vectors, strict=True):
                torch.nn.functional.linear(vector, weight)
            best = min(best, time.perf_counter() - start)
            passes += 1
    return {"dtype": dtype, "threads": torch.get_num_threads(), "matrices": len(weights), "bytes": nbytes,
            "pass_ms": best * 1000, "tokens_per_s": 1 / best, "bandwidth_gbps": nbytes / best / 1e9,
            "torch_copy_gbps": torch_copy_gbps()}


def torch_copy_gbps(megabytes: int = 256, repeats: int = 10) -> float:
    """Best large tensor copy on torch's threads (read + write): the bandwidth all the engine's threads see."""
    import torch

    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    target.copy_(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


def engine_step(model_dir: Path, flags: list[str], steps: int, top: int) -> dict[str, Any]:
    """One decode step of the in-process engine: timed, then profiled."""
    import torch
    from vllm import LLM, SamplingParams

    kwargs = {k: v for k, v in engine_kwargs(flags).items() if k not in ("shutdown_timeout",)}
    llm = LLM(model=str(model_dir), **kwargs)
    prompt = {"prompt_token_ids": list(range(1000, 1200))}  # 200 tokens, like the benchmark's prompts

    def generate(tokens: int) -> float:
        start = time.perf_counter()
        llm.generate([prompt], SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=0),
                     use_tqdm=False)
        return time.perf_counter() - start

    generate(steps + 1)  # warm-up: first-call allocations and any lazy compilation
    prefill = min(generate(1) for _ in range(3))
    full = min(generate(steps + 1) for _ in range(3))
    step_ms = (full - prefill) / steps * 1000
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        profiled = generate(steps + 1)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_self_us = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = {}
    for event in events:
        groups[group_of(event.key)] = groups.get(group_of(event.key), 0.0) + event.self_cpu_time_total
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    per_call = steps + 1  # the profiled generation: one prefill and `steps` decode steps
    return {"steps": steps, "prefill_ms": prefill * 1000, "decode_step_ms": step_ms,
            "profiled_wall_ms": profiled * 1000, "profiled_op_self_ms": total_self_us / 1000,
            "ops_per_token": per_call,
            "groups_ms": {k: v / 1000 for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_ops": [{"name": e.key, "group": group_of(e.key), "calls": e.count,
                         "self_ms": e.self_cpu_time_total / 1000} for e in ranked]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dtype", default="bfloat16", help="the served dtype, for the GEMV floor")
    parser.add_argument("--steps", type=int, default=64, help="decode steps per timed generation")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("flags", nargs="*", help="the server's engine flags (after --)")
    args = parser.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in this process, so the profiler sees it
    result = {"engine": engine_step(args.model, args.flags, args.steps, args.top)}
    result["kernel_floor"] = kernel_floor(args.model, args.dtype)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
