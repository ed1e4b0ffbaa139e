"""vLLM's processes, found in /proc: its session holds the API server and the EngineCore."""

from __future__ import annotations

from pathlib import Path


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
    if len(cores) != 1:
        raise RuntimeError(f"expected one EngineCore in vLLM's session, found {session_processes(server_pid)}")
    return cores[0]
