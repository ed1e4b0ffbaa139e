"""Unit tests see one recorded machine, not this one: the CPU profile's choices and
PLATFORM=auto depend on the host, and goldens must not. The default is the issue-8 machine
kind (AVX2-only AMD EPYC, 2 cores, 24 GiB, no accelerator); tests of other machines pin
another sample with `pin_host`. Tests of the resolver itself pass a `Machine` directly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint import resolver
from entrypoint.cpu_features import HostFacts, parse_cpuinfo, parse_meminfo

SAMPLES = Path(__file__).parent / "cpuinfo"


def sample_host(cpu: str = "avx2-amd-epyc", memory: str = "meminfo-24g", usable: int | None = None) -> HostFacts:
    """A HostFacts from the recorded /proc samples; all the sample's logical CPUs usable by default."""
    features = parse_cpuinfo((SAMPLES / f"{cpu}.cpuinfo").read_text())
    return HostFacts(cpu=features, usable_cpu_ids=tuple(range(usable or features.logical_cpus)),
                     available_bytes=parse_meminfo((SAMPLES / f"{memory}.meminfo").read_text()))


@pytest.fixture(autouse=True)
def pin_host(monkeypatch) -> Callable[..., HostFacts]:
    """Pin the resolver's edge to a recorded sample (the AVX2 one unless called with another)."""
    def pin(cpu: str = "avx2-amd-epyc", memory: str = "meminfo-24g", usable: int | None = None) -> HostFacts:
        host = sample_host(cpu, memory, usable)
        monkeypatch.setattr(resolver, "read_host", lambda: resolver.Machine(platform="cpu", cpu=host))
        return host

    pin()
    return pin
