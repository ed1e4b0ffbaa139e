"""The CPU profile: default setting values chosen from the machine's CPU features, cores and memory.

`choose` is pure: host facts and the validated settings of every other layer in, one
`Choice` (setting, value, reason) per tuned setting out. The resolver applies a choice only
where neither the model profile nor the user set that setting, and only when PLATFORM=cpu
and CPU_TUNING is not off. The reason is what a start logs (one line a decision); the
evidence names the measurement behind it in bench/results/, which the image does not carry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from entrypoint.cpu_features import GIB, CpuFeatures, HostFacts
from entrypoint.settings import Settings
from entrypoint.value_grammar import env_text

CPU_DTYPE_RESULTS_PATH = "bench/results/cpu-dtype.md"
PROFILES_RESULTS_PATH = "bench/results/profiles.md"
START_RESULTS_PATH = "bench/results/start.md"
WARM_START_RESULTS_PATH = "bench/results/start-warm.md"
KV_SHARE = 4  # a quarter of the available memory: the rest stays for weights, activations and other processes
SMALL_HOST_CORES = 4  # up to this many cores, reserving one for the API server costs too much compute
BINDING = {"VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU"}  # chosen together, kept together
KV_MAX_GIB = 8  # ~230k tokens of Gemma 3 270M in float32 (36 KiB each): far beyond 32 sequences' needs
# gcc's portable x86-64 levels by the /proc/cpuinfo flags they need (psABI; v2's are in every AVX2 CPU).
MARCH_LEVELS = (("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
                ("x86-64-v3", frozenset({"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"})))
BATCHED_TOKENS = 1024  # the CPU's prefill chunk and warm-up pass (bench/results/start.md)


@dataclass(frozen=True)
class Choice:
    """One tuned default and why."""

    setting: str
    value: str
    reason: str  # logged at start: no figures, no path
    evidence: str = ""  # the measurement behind it: a bench/results file (none: unmeasured)


def dtype_choice(cpu: CpuFeatures) -> Choice:
    """bfloat16 where the CPU computes it natively, float32 elsewhere; both measured (see the reasons)."""
    if cpu.native_bf16:
        # Zen 5 with avx512_bf16, 2 cores: bf16 c=1 TTFT 140 vs 257 ms, TPOT 32 vs 58 ms;
        # c=8 output 53.1 vs 35.4 tok/s (bench/results/cpu-dtype.md). AMX is unmeasured here:
        # its bf16 tiles are faster still than AVX-512 BF16, so the rule carries over.
        return Choice("DTYPE", "bfloat16", f"{cpu.isa} computes bf16 natively, faster than float32 to the first "
                      "token and in throughput", CPU_DTYPE_RESULTS_PATH)
    # AVX2-only EPYC, 2 cores, both bound: float32 c=1 TTFT 748 vs 4274 ms, c=8 output 24.7 vs
    # 11.0 tok/s; bf16 decodes a little faster alone (c=1 TPOT 101 vs 114 ms) but loses everywhere
    # else (bench/results/profiles.md). AVX-512 without BF16 converts bf16 in software too;
    # unmeasured, the same rule applies.
    return Choice("DTYPE", "float32", f"{cpu.isa} has no native bf16, so float32 is faster to the first token "
                  "and in throughput", PROFILES_RESULTS_PATH)


def kv_cache_choice(available_bytes: int) -> Choice:
    """A quarter of the available memory, 1 to 8 GiB: the KV cache's size is capacity, not speed."""
    gib = max(1, min(KV_MAX_GIB, available_bytes // KV_SHARE // GIB))
    return Choice("VLLM_CPU_KVCACHE_SPACE", str(gib),
                  f"a quarter of the {available_bytes / GIB:.1f} GiB available, 1-{KV_MAX_GIB} GiB (unset, vLLM "
                  "0.32 claims 90% of total memory and refuses to start when less is free)")


def compile_cache_choice() -> Choice:
    """No AOT artifact: vLLM 0.32 on the CPU cannot reload its own, so only Inductor's cache makes a restart warm."""
    # vLLM 0.32 CPU compiles in DYNAMO_TRACE_ONCE mode; its AOT artifact wraps a plain function and
    # the reload fails ("'function' object has no attribute 'finalize_loading'"), so every start
    # compiled from scratch. AVX2 EPYC, float32, 2 cores, without vs with the artifact: warm start
    # 104 vs 166 s, cold 184 vs 186 s, c=1 TPOT 114 vs 116 ms (bench/results/profiles.md).
    return Choice("VLLM_USE_AOT_COMPILE", "false",
                  "vLLM 0.32 on the CPU fails to reload its AOT artifact and compiles again at every start; "
                  "without it a restart reuses Inductor's kernel cache on the cache volume", PROFILES_RESULTS_PATH)


def march_choices(cpu: CpuFeatures) -> list[Choice]:
    """Inductor's kernels for the CPU's portable x86-64 level, not for every extension it has."""
    level = next((name for name, needs in MARCH_LEVELS if needs <= cpu.flags), None)
    if level is None:
        return []  # below AVX2 (or not x86): torch's own default stays
    # -march=native writes this CPU's every extension into kernels a compile cache then carries to
    # any CPU torch gives the same vector ISA; Inductor adds that ISA's flags itself. 2-core
    # AMX host, x86-64-v4 against native (WARM_START_RESULTS_PATH, march-native): ready cold 108
    # vs 114 s, warm 55.2 vs 55.4 s; c=1 TPOT 57.8 vs 59.1 ms, c=8 output 68.6 vs 68.4 tok/s.
    return [Choice("TORCHINDUCTOR_CPP_MARCH", level,
                   "Inductor's kernels use what every CPU of this level has, plus the vector ISA torch "
                   "picks, so a compile cache built on another such CPU (an image's shipped cache) loads here, "
                   "as fast as -march=native", WARM_START_RESULTS_PATH)]


def cpu_list(ids: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5": vLLM's VLLM_CPU_OMP_THREADS_BIND syntax."""
    runs: list[list[int]] = []
    for cpu in sorted(ids):
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def binding_choices(host: HostFacts, settings: Settings) -> list[Choice]:
    """On a small host one rank's OpenMP threads get every core; elsewhere vLLM's auto binding stays."""
    cores = host.one_cpu_per_core()
    ranks = settings.tensor_parallel_size * settings.data_parallel_size  # one OpenMP CPU list each
    if ranks != 1 or not 1 < len(cores) <= SMALL_HOST_CORES:
        return [Choice("VLLM_CPU_OMP_THREADS_BIND", "auto",
                       "vLLM's own: one OpenMP thread per physical core, one core left to the API server and "
                       f"scheduler (costs little above {SMALL_HOST_CORES} cores)")]
    # vLLM's auto binding reserves one core per rank, on 2 cores half the compute. Binding both
    # (0-1, none reserved), bf16, 2-core Zen 5: c=8 output 89.1 vs 53.1 tok/s, TPOT 88 vs 147 ms,
    # c=1 TTFT 95 vs 140 ms (bench/results/cpu-dtype.md). Measured at 2 cores; up to 4 the
    # reserved core is still a quarter of the compute, so the rule is carried that far.
    why = (f"{len(cores)} cores: all of them for the model; vLLM's auto binding keeps one for the API server, "
           "which costs more throughput than it gives on a host this small")
    return [Choice("VLLM_CPU_OMP_THREADS_BIND", cpu_list(cores), why, CPU_DTYPE_RESULTS_PATH),
            Choice("VLLM_CPU_NUM_OF_RESERVED_CPU", "0", why, CPU_DTYPE_RESULTS_PATH)]


def batched_tokens_choices(settings: Settings) -> list[Choice]:
    """1024 tokens a step: vLLM's CPU warm-up runs one forward pass of this many tokens at every start."""
    if settings.enable_chunked_prefill is False:
        return []  # without chunked prefill vLLM needs a whole prompt (MAX_MODEL_LEN) in one step
    seqs = settings.max_num_seqs
    # vLLM's CPU warm-up (its profile run) is one forward pass of MAX_NUM_BATCHED_TOKENS tokens at
    # every start, warm or cold; a longer prompt's prefill is chunked. 2-core AVX-512 BF16 EPYC,
    # against the guide's 4096 (bench/results/start.md): warm-up pass 1.9 vs 3.3 s, ready cold 92
    # vs 109 s and warm 49 vs 53 s; c=1 TPOT 35.9 vs 37.6 ms, c=8 output 83.9 vs 67.1 tok/s (an
    # earlier run: 89.3 vs 89.1 tok/s, bench/results/cpu-dtype.md; so no loss rather than a gain).
    return [Choice("MAX_NUM_BATCHED_TOKENS", str(max(BATCHED_TOKENS, seqs)),
                   "vLLM's CPU warm-up runs one forward pass of this many tokens at every start: fewer than the "
                   "guide's 4096 start faster, cold and warm, at no loss in throughput", START_RESULTS_PATH)]


def applies(settings: Settings) -> bool:
    """Whether the tuning layer runs: on the CPU, unless CPU_TUNING=off."""
    return settings.platform == "cpu" and settings.cpu_tuning != "off"


def choose(host: HostFacts, settings: Settings) -> list[Choice]:
    """Every tuned default for this host, given the validated settings of the other layers."""
    return [dtype_choice(host.cpu), kv_cache_choice(host.available_bytes), *binding_choices(host, settings),
            compile_cache_choice(), *march_choices(host.cpu), *batched_tokens_choices(settings)]


def applicable(choices: list[Choice], taken: Collection[str]) -> list[Choice]:
    """The choices for settings no higher layer set; the binding pair goes as one, so a user's
    own binding is not paired with the profile's reservation."""
    blocked = set(taken) | (BINDING if BINDING & set(taken) else set())
    return [c for c in choices if c.setting not in blocked]


def explain(choices: list[Choice], effective: Mapping[str, Any]) -> list[str]:
    """One line per decision (the binding pair is one): the choice and its reason, or that a higher
    layer overrode it."""
    lines = []
    for reason, group in groupby(choices, key=lambda c: c.reason):
        decision = list(group)
        actual = {c.setting: env_text(effective.get(c.setting)) for c in decision}
        if all(actual[c.setting] == c.value for c in decision):
            lines.append(f"cpu tuning: {', '.join(f'{c.setting}={c.value}' for c in decision)}: {reason}")
        else:
            kept = ", ".join(f"{name}={value or '(unset)'}" for name, value in actual.items())
            machine = ", ".join(c.value for c in decision)
            lines.append(f"cpu tuning: {kept} kept from your settings or the model profile; the machine's choice "
                         f"would be {machine} ({reason})")
    return lines
