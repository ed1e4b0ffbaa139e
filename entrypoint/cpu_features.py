"""What the CPU profile depends on: instruction sets, cores and memory, read from /proc text.

The parsers are pure (tests feed recorded /proc/cpuinfo and /proc/meminfo samples);
`read_host` is the one place that reads the live files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from entrypoint.bounded_read import Unreadable, read_bounded
from entrypoint.value_grammar import plain_int

GIB = 2**30


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU facts a tuning choice may depend on."""

    model: str
    flags: frozenset[str]
    # (logical CPU id, its core as "package/core") for every processor listed
    topology: tuple[tuple[int, str], ...]

    @property
    def logical_cpus(self) -> int:
        return len(self.topology)

    @property
    def physical_cores(self) -> int:
        return len({core for _, core in self.topology})

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware: AVX-512 BF16 or AMX (vLLM CPU's bf16 kernels use these)."""
        return "avx512_bf16" in self.flags or "amx_bf16" in self.flags

    @property
    def isa(self) -> str:
        """The best vector ISA, as one word: amx, avx512_bf16, avx512, avx2 or baseline."""
        if "amx_bf16" in self.flags and "amx_tile" in self.flags:
            return "amx"
        if "avx512_bf16" in self.flags:
            return "avx512_bf16"
        if self.avx512:
            return "avx512"
        return "avx2" if "avx2" in self.flags else "baseline"


@dataclass(frozen=True)
class HostFacts:
    """Features, usable CPUs and memory available to the server."""

    cpu: CpuFeatures
    usable_cpu_ids: tuple[int, ...]  # this process's CPU set (a container's cpuset, taskset)
    available_bytes: int

    def one_cpu_per_core(self) -> list[int]:
        """The usable CPUs, SMT siblings dropped (the lowest id of each core kept), as vLLM's auto binding does."""
        core_of = dict(self.cpu.topology)
        seen: dict[str, int] = {}
        for cpu in sorted(self.usable_cpu_ids):
            seen.setdefault(core_of.get(cpu, f"cpu{cpu}"), cpu)
        return sorted(seen.values())


def _blocks(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one key -> value mapping per processor."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            blocks.append({})
        elif ":" in line:
            key, value = line.split(":", 1)
            blocks[-1][key.strip()] = value.strip()
    return [b for b in blocks if "processor" in b]


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The features of the first processor and the counts over all of them."""
    processors = _blocks(text)
    if not processors:
        return CpuFeatures(model="", flags=frozenset(), topology=())
    first = processors[0]
    # x86 calls them flags, arm64 Features; a VM may leave out the topology keys (then one core each).
    flags = frozenset((first.get("flags") or first.get("Features") or "").split())
    topology = tuple((index if (number := plain_int(p["processor"])) is None else number,
                      f"{p.get('physical id', '0')}/{p.get('core id', p['processor'])}")
                     for index, p in enumerate(processors))
    return CpuFeatures(model=first.get("model name", ""), flags=flags, topology=topology)


def parse_meminfo(text: str) -> int:
    """MemAvailable in bytes (MemFree on kernels too old to report it); 0 when absent."""
    values = {}
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and plain_int(parts[1]) is not None:
            values[parts[0]] = int(parts[1]) * 1024
    return values.get("MemAvailable", values.get("MemFree", 0))


def parse_cgroup_limit(text: str) -> int | None:
    """A cgroup v2 memory.max: bytes, or None for `max` (no limit) or unreadable text."""
    value = text.strip()
    return plain_int(value)


PROC_TEXT_MAX = 8 * 2**20  # /proc/cpuinfo of a 512-core host is about 1 MiB


def _read(path: Path) -> str:
    """A /proc or cgroup file's text; "" unless it is a readable regular file (never a FIFO or /dev/zero)."""
    try:
        return read_bounded(path, PROC_TEXT_MAX).decode("utf-8", errors="replace")
    except Unreadable:
        return ""


def read_host(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> HostFacts:
    """The live machine: /proc/cpuinfo, /proc/meminfo, this process's CPU set and its cgroup's memory cap.

    A container sees the host's meminfo, so its cgroup limit caps what counts as available.
    """
    cpu = parse_cpuinfo(_read(proc / "cpuinfo"))
    available = parse_meminfo(_read(proc / "meminfo"))
    limit = parse_cgroup_limit(_read(cgroup / "memory.max"))
    if limit is not None:
        used = parse_cgroup_limit(_read(cgroup / "memory.current")) or 0
        available = min(available, max(limit - used, 0)) if available else max(limit - used, 0)
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return HostFacts(cpu=cpu, usable_cpu_ids=tuple(sorted(usable)), available_bytes=available)
