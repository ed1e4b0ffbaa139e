"""Child processes of the test bed: a clean environment behind the network guard, and the
processes of a running vLLM's session (its engine core among them)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from testbed.paths import ROOT

NETGUARD = ROOT / "testbed" / "netguard"  # on PYTHONPATH, it refuses every non-loopback connect


def child_env(**settings: str) -> dict[str, str]:
    """A clean environment: only what a process needs, plus the network guard."""
    # LD_PRELOAD: the guide's vLLM 0.18 (TEST_VLLM=guide) refuses to start without its allocator preloaded.
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "LD_PRELOAD")}
    return {**keep, "PYTHONPATH": f"{NETGUARD}:{ROOT}", "PYTHONUNBUFFERED": "1",
            "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false", **settings}


def session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of the live processes in vLLM's session."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found[int(stat.parent.name)] = cmdline.strip()
    return found


def engine_core_pid(server_pid: int) -> int:
    """The EngineCore process (vLLM titles it VLLM::EngineCore)."""
    cores = [pid for pid, cmdline in session_processes(server_pid).items() if "EngineCore" in cmdline]
    assert len(cores) == 1, session_processes(server_pid)
    return cores[0]


def resume_session(server_pid: int) -> None:
    """SIGCONT every process of vLLM's session (a frozen one would never see SIGTERM)."""
    for member in session_processes(server_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGCONT)
