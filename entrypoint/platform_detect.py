"""Which accelerator this machine has: an Ascend NPU first, then CUDA, else the CPU."""

from __future__ import annotations

from pathlib import Path


def detect_platform(dev: Path = Path("/dev")) -> str:
    """Return npu, cuda or cpu from the device nodes present (a driver tool alone is not a device)."""
    if (dev / "davinci_manager").exists() or any(dev.glob("davinci[0-9]*")):
        return "npu"
    if (dev / "nvidiactl").exists() or any(dev.glob("nvidia[0-9]*")):
        return "cuda"
    return "cpu"
