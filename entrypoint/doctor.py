"""`entrypoint doctor`: the host problems vllm-ascend operators meet before vLLM starts.

Each check is a small function of the resolved settings and a `HostTree` (a root folder
and an environment mapping, so tests build fixture trees and pass their own variables);
it returns findings, OK, WARN or FAIL, each with the one fix to make. `serve` runs the
same table first: a FAIL stops it before vLLM spends minutes starting.

Every check names its source: the vllm-ascend FAQ, documentation or issue where the
failure class was reported.

The doctor is safe on any tree it is pointed at: it reads only regular files, at most
TEXT_MAX_BYTES each (a FIFO, /dev/zero or a folder is never opened); each check has
CHECK_TIMEOUT; with `--root` it writes nothing, and it runs a binary from that tree only
when told to (`--run-tools`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from entrypoint.bounded_read import Unreadable, read_bounded
from entrypoint.cpu_features import GIB, read_host
from entrypoint.preflight import unwritable_reason, writable_dirs
from entrypoint.settings import Settings
from entrypoint.value_grammar import plain_int

Status = Literal["OK", "WARN", "FAIL"]
NPU_SMI_TIMEOUT = 10.0
CHECK_TIMEOUT = NPU_SMI_TIMEOUT + 5.0  # a check that walks a hung mount ends here
TEXT_MAX_BYTES = 2**20  # /proc/mounts of a busy Kubernetes node is some 100 KiB; version files are lines
NPU_CONTROL_NODES = ("davinci_manager", "devmm_svm", "hisi_hdc")
NPU_SMI_PATHS = ("usr/local/bin/npu-smi", "usr/local/sbin/npu-smi")
NVIDIA_SMI_PATHS = ("usr/bin/nvidia-smi", "usr/local/bin/nvidia-smi")
DRIVER = "usr/local/Ascend/driver"
TOOLKIT_VERSION_FILES = ("usr/local/Ascend/ascend-toolkit/latest/*/ascend_toolkit_install.info",
                         "usr/local/Ascend/ascend-toolkit/latest/ascend_toolkit_install.info",
                         "usr/local/Ascend/cann*/*/ascend_toolkit_install.info")
# The Ascend HDK (driver and firmware) each CANN release is validated with, from the
# vllm-ascend installation pages: CANN 8.5 (the v0.18 images) with HDK 25.5
# (https://docs.vllm.ai/projects/ascend/en/v0.13.0/installation.html), CANN 9.1 with 26.0.RC1
# (https://docs.vllm.ai/projects/ascend/en/latest/getting_started/installation.html).
MIN_DRIVER_FOR_CANN: dict[tuple[int, int], tuple[int, int]] = {(8, 5): (25, 5), (9, 1): (26, 0)}
SHM_MULTI_WORKER = 1 * GIB  # vllm-ascend's docker examples: --shm-size=1g
SHM_SINGLE_WORKER = 64 * 2**20  # Docker's default; enough for one worker's broadcast queue
HCCL_TIMEOUTS = {"HCCL_CONNECT_TIMEOUT": (120, 7200), "HCCL_EXEC_TIMEOUT": (0, 17340)}
SOCKET_IFNAMES = ("HCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME")


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's table."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:<4} {self.check:<18} {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclass
class HostTree:
    """The machine as the checks see it: files under `root`, variables from `environ`."""

    root: Path = Path("/")
    environ: Mapping[str, str] = field(default_factory=dict)
    timeout: float = NPU_SMI_TIMEOUT
    run_tools: bool | None = None  # None: only on the real root

    def path(self, relative: str) -> Path:
        return self.root / relative

    @property
    def is_real_root(self) -> bool:
        return self.root.resolve() == Path("/")

    def text(self, path: Path) -> str:
        """A file's text, bounded and never blocking; "" when it is not a readable regular file."""
        try:
            return read_bounded(path, TEXT_MAX_BYTES).decode("utf-8", errors="replace")
        except Unreadable:
            return ""

    def first(self, candidates: Iterable[str]) -> Path | None:
        """The first of these paths (globs allowed) that exists."""
        for pattern in candidates:
            found = sorted(self.root.glob(pattern)) if "*" in pattern else [self.path(pattern)]
            for path in found:
                if path.exists():
                    return path
        return None

    def run(self, tool: Path, *args: str) -> tuple[int | None, str]:
        """A tool's exit status and output; None when it did not answer within the timeout."""
        if not (self.is_real_root if self.run_tools is None else self.run_tools):
            return 126, f"not run: {tool} lies in the tree --root names (add --run-tools to run it)"
        try:
            done = subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return None, ""
        except OSError as exc:
            return 127, str(exc)
        return done.returncode, done.stdout + done.stderr

    @cached_property
    def npu_smi(self) -> tuple[Path | None, int | None, str]:
        """`npu-smi info`, run once per doctor run: where it is, its status and output."""
        tool = self.first(NPU_SMI_PATHS)
        if tool is None:
            return None, 127, ""
        return (tool, *self.run(tool, "info"))

    def cards(self, name: str) -> list[int] | None:
        """A visible-devices variable as card numbers; None when unset, [] when malformed."""
        value = self.environ.get(name, "").strip()
        if not value:
            return None
        parts = [p.strip() for p in value.split(",")]
        numbers = [plain_int(p) for p in parts]
        return [n for n in numbers if n is not None] if None not in numbers else []

    def npu_nodes(self) -> list[int]:
        numbers = (plain_int(p.name[7:]) for p in self.path("dev").glob("davinci[0-9]*"))
        return sorted(n for n in numbers if n is not None)

    def visible_cards(self) -> list[int]:
        """The cards the server will use: the runtime's variable, the container's, else every node."""
        for name in ("ASCEND_RT_VISIBLE_DEVICES", "ASCEND_VISIBLE_DEVICES"):
            cards = self.cards(name)
            if cards:
                return cards
        return self.npu_nodes()


Check = Callable[[Settings, HostTree], list[Finding]]


def _ok(check: str, detail: str) -> list[Finding]:
    return [Finding(check, "OK", detail)]


def world_size(settings: Settings) -> int:
    """The ranks, so the cards, on this node: a LeaderWorkerSet group splits them over its nodes."""
    return settings.cards_per_model // (settings.lws_group_size or 1)


# --- Ascend NPU ------------------------------------------------------------------------

def npu_device_nodes(settings: Settings, host: HostTree) -> list[Finding]:
    """/dev/davinciN for each card the server will use.

    Source: vllm-ascend's `docker run` passes --device /dev/davinciN per card
    (https://docs.vllm.ai/projects/ascend/en/latest/getting_started/installation.html);
    only the first card seen: https://github.com/vllm-project/vllm-ascend/issues/6063
    """
    cards = host.visible_cards()
    if not cards:
        return [Finding("npu-devices", "FAIL", "no /dev/davinci* device node in the container",
                        "pass the card: docker --device /dev/davinciN (compose: NPU_DEVICE), or the Ascend "
                        "device plugin's resource in Kubernetes")]
    missing = [c for c in cards if not host.path(f"dev/davinci{c}").exists()]
    if missing:
        return [Finding("npu-devices", "FAIL", "visible card(s) " + ", ".join(map(str, missing)) + " have no "
                        "/dev/davinciN node", "map each visible card: --device /dev/davinci"
                        f"{missing[0]}, or make the visible-devices variables name the mapped cards")]
    return _ok("npu-devices", "device node for card(s) " + ", ".join(map(str, cards)))


def npu_control_nodes(settings: Settings, host: HostTree) -> list[Finding]:
    """davinci_manager, devmm_svm and hisi_hdc, which every card needs.

    Source: a misspelt /dev/davinci_manager mapping (`/dev/dav_manager`) left torch_npu without
    its driver: https://github.com/vllm-project/vllm-ascend/issues/1440
    """
    missing = [n for n in NPU_CONTROL_NODES if not host.path(f"dev/{n}").exists()]
    if missing:
        return [Finding("npu-control-nodes", "FAIL", "missing /dev/" + ", /dev/".join(missing),
                        "add --device /dev/" + " --device /dev/".join(missing) + " (compose/npu.yaml has them)")]
    return _ok("npu-control-nodes", "/dev/" + ", /dev/".join(NPU_CONTROL_NODES))


def npu_driver_libraries(settings: Settings, host: HostTree) -> list[Finding]:
    """The host driver's libascend_hal.so mounted into the container.

    Source: "libascend_hal.so: cannot open shared object file" when the driver folder is not
    mounted: https://github.com/vllm-project/vllm-ascend/issues/1440
    """
    lib64 = host.path(f"{DRIVER}/lib64")
    if not any(lib64.glob("libascend_hal.so")) and not any(lib64.glob("*/libascend_hal.so")):
        return [Finding("npu-driver-libs", "FAIL", f"no libascend_hal.so under /{DRIVER}/lib64",
                        f"mount the host driver: -v /{DRIVER}/lib64/:/{DRIVER}/lib64/ (Ascend 950: the whole "
                        f"/{DRIVER} folder)")]
    return _ok("npu-driver-libs", f"libascend_hal.so under /{DRIVER}/lib64")


def driver_version(host: HostTree) -> str | None:
    """`Version=` of the driver's version.info."""
    text = host.text(host.path(f"{DRIVER}/version.info"))
    match = re.search(r"^\s*Version\s*=\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def cann_version(host: HostTree) -> str | None:
    """`version=` of the image's CANN toolkit install record."""
    path = host.first(TOOLKIT_VERSION_FILES)
    if path is None:
        return None
    match = re.search(r"^\s*version\s*=\s*(\S+)", host.text(path), re.MULTILINE)
    return match.group(1) if match else None


def major_minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def npu_driver_version(settings: Settings, host: HostTree) -> list[Finding]:
    """version.info mounted, and the driver at least what the image's CANN was validated with.

    Source: CANN of the image rejecting an older driver (24.1):
    https://github.com/vllm-project/vllm-ascend/issues/5468; the validated pairs are in
    MIN_DRIVER_FOR_CANN above.
    """
    driver = driver_version(host)
    if driver is None:
        return [Finding("npu-driver-version", "WARN", f"/{DRIVER}/version.info missing or without Version=",
                        f"mount it: -v /{DRIVER}/version.info:/{DRIVER}/version.info")]
    cann = cann_version(host)
    if cann is None:
        return _ok("npu-driver-version", f"driver {driver}; no CANN toolkit record in this image to compare")
    need = MIN_DRIVER_FOR_CANN.get(major_minor(cann) or (0, 0))
    have = major_minor(driver)
    if need and have and have < need:
        return [Finding("npu-driver-version", "WARN", f"driver {driver} is older than the {need[0]}.{need[1]} "
                        f"CANN {cann} in this image is validated with",
                        f"upgrade the host's Ascend HDK to {need[0]}.{need[1]} or later, or use an image whose "
                        "CANN matches the driver")]
    return _ok("npu-driver-version", f"driver {driver}, CANN {cann}")


def npu_smi_answers(settings: Settings, host: HostTree) -> list[Finding]:
    """npu-smi mounted and answering within the timeout.

    Source: vllm-ascend's installation check is `npu-smi info`, with npu-smi mounted from the host
    (https://docs.vllm.ai/projects/ascend/en/latest/getting_started/installation.html).
    """
    tool, status, output = host.npu_smi
    if tool is None:
        return [Finding("npu-smi", "WARN", "npu-smi is not mounted; the card checks below are skipped",
                        "mount it: -v /usr/local/bin/npu-smi:/usr/local/bin/npu-smi and -v /usr/local/dcmi:"
                        "/usr/local/dcmi")]
    if status is None:
        return [Finding("npu-smi", "FAIL", f"npu-smi info did not answer within {host.timeout:.0f} s",
                        "the driver is hung: check `npu-smi info` on the host, restart the driver or the host")]
    if status != 0 and not busy_code(output):
        last = (output.strip().splitlines() or ["no output"])[-1]
        return [Finding("npu-smi", "FAIL", f"npu-smi info exited {status}: {last}",
                        "mount /usr/local/dcmi too and check the driver on the host with `npu-smi info`")]
    return _ok("npu-smi", "npu-smi info answers")


def busy_code(output: str) -> str | None:
    match = re.search(r"ret is (-80(?:05|20))", output)
    return match.group(1) if match else None


def npu_card_free(settings: Settings, host: HostTree) -> list[Finding]:
    """No other container or process holds the card.

    Source: dcmi "ret is -8005" when another container holds the device
    (https://github.com/vllm-project/vllm-ascend/issues/2698; -8020 "the device is used":
    https://github.com/Ascend/cann-container-image/issues/46); a second server on a card
    (https://github.com/vllm-project/vllm-ascend/issues/6942).
    """
    tool, status, output = host.npu_smi
    if tool is None or status is None:
        return []
    code = busy_code(output)
    if code:
        return [Finding("npu-card-free", "FAIL", f"npu-smi: dcmi initialize failed (ret {code}): another "
                        "container holds the card", "stop the other container on this card, or pick a free "
                        "card (NPU_DEVICE / ASCEND_VISIBLE_DEVICES)")]
    cards = set(host.visible_cards())
    holders = [(npu, pid, name) for npu, pid, name in npu_processes(output) if not cards or npu in cards]
    if holders:
        npu, pid, name = holders[0]
        return [Finding("npu-card-free", "FAIL", f"card {npu} is in use by process {pid} ({name or 'unnamed'})",
                        "stop that process, or pick a free card (NPU_DEVICE / ASCEND_VISIBLE_DEVICES)")]
    return _ok("npu-card-free", "no process on the visible cards")


PROCESS_ROW = re.compile(r"^\|\s*(\d+)\s+\d+\s*\|\s*(\d+)\s*\|\s*([^|]*?)\s*\|\s*\d+")


def npu_processes(output: str) -> list[tuple[int, int, str]]:
    """(NPU id, pid, name) rows of `npu-smi info`'s process table."""
    rows = output.split("Process id", 1)[1].splitlines() if "Process id" in output else []
    return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in map(PROCESS_ROW.match, rows) if m]


def npu_visible_devices(settings: Settings, host: HostTree) -> list[Finding]:
    """ASCEND_VISIBLE_DEVICES and ASCEND_RT_VISIBLE_DEVICES well formed and naming the same cards.

    Source: only setting both to the same cards made two cards usable
    (https://github.com/vllm-project/vllm-ascend/issues/6942); a device plugin setting one but not
    the other fails on a non-first card (https://github.com/vllm-project/vllm-ascend/issues/9428).
    """
    found = []
    for name in ("ASCEND_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES"):
        if host.cards(name) == []:
            found.append(Finding("visible-devices", "FAIL", f"{name}={host.environ.get(name)!r} is not a "
                                 "list of card numbers", f"set {name} to card numbers such as 0 or 0,1"))
    if found:
        return found
    container, runtime = host.cards("ASCEND_VISIBLE_DEVICES"), host.cards("ASCEND_RT_VISIBLE_DEVICES")
    if container and runtime and sorted(container) != sorted(runtime):
        return [Finding("visible-devices", "WARN", f"ASCEND_VISIBLE_DEVICES={','.join(map(str, container))} "
                        f"and ASCEND_RT_VISIBLE_DEVICES={','.join(map(str, runtime))} name different cards",
                        "set both to the same cards (compose: NPU_DEVICE sets both)")]
    return _ok("visible-devices", "visible-device variables agree")


def npu_enough_cards(settings: Settings, host: HostTree) -> list[Finding]:
    """As many visible cards as this node's ranks: TENSOR_PARALLEL_SIZE x PIPELINE_PARALLEL_SIZE x
    DATA_PARALLEL_SIZE, divided by LWS_GROUP_SIZE in a LeaderWorkerSet group.

    Source: only the first card recognized whatever the mapping
    (https://github.com/vllm-project/vllm-ascend/issues/6063).
    """
    cards, need = host.visible_cards(), world_size(settings)
    if not cards:
        return []  # npu-devices already says so
    if len(cards) < need:
        return [Finding("npu-card-count", "FAIL", f"{len(cards)} visible card(s) for TENSOR_PARALLEL_SIZE x "
                        f"DATA_PARALLEL_SIZE = {need}", f"map {need} cards, or lower TENSOR_PARALLEL_SIZE / "
                        "DATA_PARALLEL_SIZE")]
    return _ok("npu-card-count", f"{len(cards)} card(s) for {need} rank(s)")


def default_ascend_log(settings: Settings, host: HostTree) -> list[Finding]:
    """Without ASCEND_LOG_PATH, CANN writes its plog under $HOME/ascend/log.

    Source: the guide's note 2 (ASCEND_LOG_PATH on a read-only or foreign home), and
    vllm-ascend asking for the plog in ~/ascend/log
    (https://github.com/vllm-project/vllm-ascend/issues/3717).
    """
    if settings.ascend_log_path is not None:
        return []
    home = host.environ.get("HOME", "/root")
    reason = unwritable_reason(host.path(home.lstrip("/")) / "ascend" / "log")
    if reason:
        return [Finding("ascend-log", "FAIL", f"ASCEND_LOG_PATH is unset and {home}/ascend/log cannot be "
                        f"written ({reason})", "set ASCEND_LOG_PATH to a writable folder, e.g. under "
                        "MODEL_CACHE_DIR")]
    return _ok("ascend-log", f"plog under {home}/ascend/log")


def hccl_network(settings: Settings, host: HostTree) -> list[Finding]:
    """With TP or DP above 1: HCCL timeouts in range, socket interfaces present, HCCL_IF_IP an address.

    Source: HCCL's defaults (connect 120 s, exec 1836 s) printed in a plog
    (https://github.com/vllm-project/vllm-ascend/issues/5468); the interface and IP variables of
    multi-card serving (https://github.com/vllm-project/vllm-ascend/issues/5087); collective
    timeouts (https://github.com/vllm-project/vllm-ascend/issues/382).
    """
    if world_size(settings) <= 1:
        return []
    found = []
    for name, (low, high) in HCCL_TIMEOUTS.items():
        value = host.environ.get(name, "").strip()
        seconds = plain_int(value)
        if value and not (seconds is not None and low <= seconds <= high):
            found.append(Finding("hccl", "FAIL", f"{name}={value!r} is not whole seconds from {low} to {high}",
                                 f"set {name} within {low}-{high}, or unset it for HCCL's default"))
    for name in SOCKET_IFNAMES:
        value = host.environ.get(name, "").strip()
        names = [n.lstrip("=^") for n in value.split(",") if n.strip()]
        absent = [n for n in names if not host.path(f"sys/class/net/{n}").exists()]
        if absent:
            found.append(Finding("hccl", "FAIL", f"{name}={value!r}: no interface {absent[0]} here",
                                 f"set {name} to an interface of `ip -br link` (the one carrying HCCL_IF_IP)"))
    address = host.environ.get("HCCL_IF_IP", "").strip()
    if address:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            found.append(Finding("hccl", "FAIL", f"HCCL_IF_IP={address!r} is not an IP address",
                                 "set HCCL_IF_IP to this host's address on the HCCL network"))
    return found or _ok("hccl", f"HCCL variables sane for {world_size(settings)} ranks")


# --- every platform --------------------------------------------------------------------

def shm_size(host: HostTree) -> int | None:
    """The size of /dev/shm: its mount's size= option, else the file system's own figure."""
    mounts = host.text(host.path("proc/self/mounts")) or host.text(host.path("proc/mounts"))
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/dev/shm":
            size = re.search(r"(?:^|,)size=(\d+)([kmg]?)", fields[3])
            if size:
                return int(size.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[size.group(2)]
    try:
        stat = os.statvfs(host.path("dev/shm"))
    except OSError:
        return None
    return stat.f_frsize * stat.f_blocks


def shared_memory(settings: Settings, host: HostTree) -> list[Finding]:
    """/dev/shm large enough for vLLM's worker broadcast queue.

    Source: "No available shared memory broadcast block found" and the shm question
    (https://github.com/vllm-project/vllm-ascend/issues/5333, /3717); vllm-ascend's docker
    examples pass --shm-size=1g.
    """
    size = shm_size(host)
    if size is None:
        return [Finding("shm", "WARN", "/dev/shm is missing", "give the container shared memory: "
                        "docker --shm-size=1g (compose: SHM_SIZE), Kubernetes: an emptyDir with medium Memory")]
    need = SHM_MULTI_WORKER if world_size(settings) > 1 else SHM_SINGLE_WORKER
    if size < need:
        return [Finding("shm", "FAIL" if world_size(settings) > 1 else "WARN",
                        f"/dev/shm is {size // 2**20} MiB; {need // 2**20} MiB needed for "
                        f"{world_size(settings)} worker(s)", "raise it: docker --shm-size=1g (compose: SHM_SIZE), "
                        "Kubernetes: an emptyDir with medium Memory on /dev/shm")]
    return _ok("shm", f"/dev/shm {size // 2**20} MiB")


def writable_folders(settings: Settings, host: HostTree) -> list[Finding]:
    """ASCEND_LOG_PATH and every cache folder writable by this user.

    Source: the guide's note 2 (ASCEND_LOG_PATH), and the plog folder vllm-ascend asks for
    (https://github.com/vllm-project/vllm-ascend/issues/3717).
    """
    found = []
    for name, path in writable_dirs(settings).items():
        reason = unwritable_reason(path) if host.is_real_root else not_writable_in_tree(host, path)
        if reason:
            found.append(Finding("writable", "FAIL", f"{name}={path} cannot be written ({reason})",
                                 f"point {name} at a writable folder, or make it writable for this user"))
    return found or _ok("writable", ", ".join(writable_dirs(settings)) + " writable")


def not_writable_in_tree(host: HostTree, path: Path) -> str | None:
    """Why `path` inside the tree --root names could not be written, found without writing there."""
    inside_tree = host.root / path.relative_to(path.anchor)
    existing = next((p for p in (inside_tree, *inside_tree.parents) if p.exists()), host.root)
    if not existing.is_dir():
        return f"{existing} is not a folder"
    return None if os.access(existing, os.W_OK | os.X_OK) else f"{existing} is not writable for this user"


# --- CUDA ------------------------------------------------------------------------------

def cuda_devices(settings: Settings, host: HostTree) -> list[Finding]:
    """/dev/nvidiactl and at least TP x DP /dev/nvidiaN.

    Source: vLLM's CUDA image needs the NVIDIA runtime (`docker run --gpus all`,
    https://docs.vllm.ai/en/latest/deployment/docker.html).
    """
    gpus = [p for p in host.path("dev").glob("nvidia[0-9]*")]
    if not host.path("dev/nvidiactl").exists() or not gpus:
        return [Finding("cuda-devices", "FAIL", "no /dev/nvidiactl or /dev/nvidiaN in the container",
                        "run with the NVIDIA container runtime: docker --gpus all (compose/cuda.yaml)")]
    if len(gpus) < world_size(settings):
        return [Finding("cuda-devices", "FAIL", f"{len(gpus)} GPU(s) for {world_size(settings)} rank(s)",
                        "expose more GPUs or lower TENSOR_PARALLEL_SIZE / DATA_PARALLEL_SIZE")]
    return _ok("cuda-devices", f"{len(gpus)} GPU node(s)")


def cuda_smi(settings: Settings, host: HostTree) -> list[Finding]:
    """nvidia-smi answers (the driver is reachable from the container).

    Source: vLLM's docker deployment page (https://docs.vllm.ai/en/latest/deployment/docker.html).
    """
    tool = host.first(NVIDIA_SMI_PATHS)
    if tool is None:
        return [Finding("nvidia-smi", "WARN", "nvidia-smi is not in the container",
                        "run with the NVIDIA container runtime, which mounts it (docker --gpus all)")]
    status, output = host.run(tool)
    if status != 0:
        last = (output.strip().splitlines() or ["no answer"])[-1]
        return [Finding("nvidia-smi", "FAIL", f"nvidia-smi failed: {last}",
                        "check the host driver with nvidia-smi, and the NVIDIA container toolkit")]
    return _ok("nvidia-smi", "nvidia-smi answers")


# --- CPU -------------------------------------------------------------------------------

def cpu_isa(settings: Settings, host: HostTree) -> list[Finding]:
    """An x86 CPU with at least AVX2, which vLLM's CPU build needs.

    Source: vLLM CPU installation requirements
    (https://docs.vllm.ai/en/latest/getting_started/installation/cpu.html).
    """
    cpu = read_host(host.path("proc"), host.path("sys/fs/cgroup")).cpu
    x86 = "sse2" in cpu.flags
    if x86 and cpu.isa == "baseline":
        return [Finding("cpu-isa", "FAIL", f"{cpu.model or 'this CPU'} has no AVX2",
                        "serve on a CPU with AVX2 or AVX-512 (vLLM's CPU kernels need it)")]
    return _ok("cpu-isa", f"{cpu.isa if x86 else 'non-x86'}, {cpu.physical_cores} core(s)")


def cpu_memory(settings: Settings, host: HostTree) -> list[Finding]:
    """Memory for the KV cache (VLLM_CPU_KVCACHE_SPACE) on top of what is in use.

    Source: vLLM CPU's VLLM_CPU_KVCACHE_SPACE
    (https://docs.vllm.ai/en/latest/getting_started/installation/cpu.html).
    """
    available = read_host(host.path("proc"), host.path("sys/fs/cgroup")).available_bytes
    if not available:
        return [Finding("cpu-memory", "WARN", "available memory unknown (no /proc/meminfo)", "")]
    space = settings.vllm_cpu_kvcache_space
    if space and space * GIB > available:
        return [Finding("cpu-memory", "FAIL", f"VLLM_CPU_KVCACHE_SPACE={space} GiB but only "
                        f"{available / GIB:.1f} GiB is available", "lower VLLM_CPU_KVCACHE_SPACE "
                        "or give the container more memory")]
    return _ok("cpu-memory", f"{available / GIB:.1f} GiB available"
               + (f" for a {space} GiB KV cache" if space else ""))


CHECKS: dict[str, tuple[Check, ...]] = {
    "npu": (npu_device_nodes, npu_control_nodes, npu_driver_libraries, npu_driver_version, npu_smi_answers,
            npu_card_free, npu_visible_devices, npu_enough_cards, default_ascend_log, hccl_network,
            shared_memory, writable_folders),
    "cuda": (cuda_devices, cuda_smi, shared_memory, writable_folders),
    "cpu": (cpu_isa, cpu_memory, shared_memory, writable_folders),
}


def run_checks(settings: Settings, host: HostTree) -> list[Finding]:
    """Every check for the resolved platform, in table order, each within CHECK_TIMEOUT."""
    return [finding for check in CHECKS[settings.platform] for finding in bounded(check, settings, host)]


def bounded(check: Check, settings: Settings, host: HostTree) -> list[Finding]:
    """`check`'s findings, or one WARN when it has not finished in CHECK_TIMEOUT (a hung mount, a huge tree)."""
    result: list[list[Finding]] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            result.append(check(settings, host))
        except BaseException as exc:  # re-raised below, in the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(CHECK_TIMEOUT)
    if failed:
        raise failed[0]
    if not result:
        name = check.__name__.replace("_", "-")
        return [Finding(name, "WARN", f"did not finish within {CHECK_TIMEOUT:.0f} s; skipped",
                        "check the folders it reads for a hung mount (see the check's source in `entrypoint doctor`)")]
    return result[0]


def failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status == "FAIL"]


def report(findings: list[Finding], as_json: bool) -> str:
    """The table (one finding a line) or JSON."""
    if as_json:
        return json.dumps([asdict(f) for f in findings], indent=2)
    return "\n".join(f.line() for f in findings)
