"""Turn a failed vLLM start into one sentence that names the setting to change.

Each pattern matches a line vLLM prints for a known failure (seen on vLLM 0.32 CPU; the
texts come from vLLM's own config checks, so other builds print the same), or a line
vllm-ascend, torch_npu or HCCL print at run time (texts recorded from vllm-ascend's FAQ and
issues, cited beside each). The first pattern in list order that any line matches wins, so
the specific come before the general. A failure no pattern knows stays unknown: the caller
then quotes vLLM's last lines.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterable

from entrypoint.scrub import scrub

log = logging.getLogger("entrypoint.startup_errors")

KNOWN_FAILURES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"unrecognized arguments: (.+)"),
     "vLLM does not know {0}: fix or remove it in EXTRA_ARGS"),
    (re.compile(r"User-specified max_model_len \((\d+)\) is greater than the derived max_model_len "
                r"\((?:max_position_embeddings=)?([\d.]+)"),
     "MAX_MODEL_LEN={0} is longer than the model allows ({1}): lower MAX_MODEL_LEN"),
    (re.compile(r"To serve at least one request with the model's max seq len \((\d+)\)"),
     "the KV cache cannot hold one request of MAX_MODEL_LEN={0}: lower MAX_MODEL_LEN, or give the cache "
     "more memory (GPU_MEMORY_UTILIZATION; VLLM_CPU_KVCACHE_SPACE on CPU)"),
    (re.compile(r"No available memory for the cache blocks"),
     "no memory left for the KV cache after the weights: raise GPU_MEMORY_UTILIZATION "
     "(VLLM_CPU_KVCACHE_SPACE on CPU) or serve a smaller model (MODEL_ID)"),
    (re.compile(r"Model architectures \[([^\]]*)\] are not supported"),
     "this vLLM cannot serve the architecture {0} of MODEL_ID: choose a supported model or another image"),
    (re.compile(r"Cannot find any model weights with `([^`]*)`"),
     "no weight files in {0}: MODEL_SOURCE points at an incomplete model folder"),
    # https://docs.vllm.ai/projects/ascend/en/latest/faqs.html (question 17, stream resources)
    (re.compile(r"error code is 207008"),
     "ACL graph capture ran out of NPU stream resources (error 207008): capture fewer sizes "
     "(COMPILATION_CONFIG cudagraph_capture_sizes or max_cudagraph_capture_size), use FULL_DECODE_ONLY "
     "rather than PIECEWISE, upgrade the host's HDK/CANN, or ENFORCE_EAGER=true to confirm"),
    # https://github.com/vllm-project/vllm-ascend/issues/382
    (re.compile(r"Watchdog caught collective operation timeout: WorkHCCL\(.*OpType=(\w+).*Timeout\(ms\)=(\d+)"),
     "an HCCL {0} waited {1} ms and timed out: one rank hung or died first (its own error is earlier in the "
     "log); check the cards with npu-smi info and HCCL_SOCKET_IFNAME/HCCL_IF_IP; HCCL_EXEC_TIMEOUT bounds the wait"),
    # https://github.com/vllm-project/vllm-ascend/issues/16646 (exec timeout, 1836 s by default)
    (re.compile(r"hccl fftsplus task timeout.*timeout=(\d+)s"),
     "an HCCL task hung for {0} s (HCCL_EXEC_TIMEOUT): one rank stopped answering; check the cards with npu-smi "
     "info and the ranks' first errors; lower HCCL_EXEC_TIMEOUT to fail sooner"),
    # https://github.com/vllm-project/vllm-ascend/issues/486
    (re.compile(r"EI0006.*Getting socket times out|Communication_Error_Get_Socket\(EI0006\)"),
     "HCCL ranks could not connect (EI0006): check HCCL_IF_IP and HCCL_SOCKET_IFNAME name this host's HCCL "
     "network and that every rank started; raise HCCL_CONNECT_TIMEOUT (default 120 s) for slow starts"),
    # https://github.com/vllm-project/vllm-ascend/issues/1987, /19
    (re.compile(r"NPU out of memory\. Tried to allocate ([\d.]+ \w+) \(NPU (\d+)"),
     "NPU {1} ran out of memory (tried to allocate {0}): lower GPU_MEMORY_UTILIZATION (the share of each card "
     "vLLM takes), MAX_MODEL_LEN or MAX_NUM_SEQS, raise TENSOR_PARALLEL_SIZE, or free the card (npu-smi info "
     "lists other processes)"),
    (re.compile(r"(?:out of memory|OutOfMemoryError|Cannot allocate memory)", re.IGNORECASE),
     "out of memory while starting: lower GPU_MEMORY_UTILIZATION, MAX_MODEL_LEN or MAX_NUM_SEQS, "
     "or serve a smaller model (MODEL_ID)"),
    # Last: a hang's symptom, not its cause. https://github.com/vllm-project/vllm-ascend/issues/3717, /5333
    (re.compile(r"No available shared memory broadcast block found in (\d+) seconds"),
     "vLLM's workers stopped answering its broadcast queue for {0} s or more: a worker hung or compiled for long; "
     "check /dev/shm (SHM_SIZE, `entrypoint doctor`), the cards (npu-smi info) and, with TP/DP > 1, HCCL"),
]


def classify(lines: Iterable[str]) -> str | None:
    """The sentence for the first known failure in vLLM's output, or None."""
    text = list(lines)
    for pattern, message in KNOWN_FAILURES:
        for line in text:
            match = pattern.search(line)
            if match:
                return message.format(*(group.strip() for group in match.groups()))
    return None


KUBERNETES_TERMINATION_LOG = "/dev/termination-log"
MESSAGE_MAX = 4000  # the kubelet keeps at most 4 KiB


def write_termination_message(path: str, message: str) -> None:
    """Leave the reason where Kubernetes shows it (`kubectl describe`); skip quietly where it can't.

    The kubelet mounts /dev/termination-log into the container; outside Kubernetes that
    file does not exist and is not created (a root process would litter the host's /dev).
    """
    if path == KUBERNETES_TERMINATION_LOG and not os.path.exists(path):
        return
    if not holds_termination_message(path):
        log.warning("TERMINATION_LOG=%s is not empty and not a termination message; left as it is", path)
        return
    try:
        # O_NOFOLLOW: a link planted at the path is not followed to another file.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(scrub(message)[:MESSAGE_MAX] + "\n")
    except OSError:
        pass


def holds_termination_message(path: str) -> bool:
    """Whether `path` may be overwritten: absent, or a regular file of at most one message's length and
    one line (the kubelet's empty file, or what an earlier start wrote). Anything else is someone's file."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISREG(found.st_mode) or found.st_size > MESSAGE_MAX + 1:
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(MESSAGE_MAX + 2).count(b"\n") <= 1
    except OSError:
        return False
