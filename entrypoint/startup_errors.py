"""Turn a failed vLLM start into one sentence that names the setting to change.

Each pattern matches a line vLLM prints for a known failure (seen on vLLM 0.32 CPU; the
texts come from vLLM's own config checks, so other builds print the same). A failure no
pattern knows stays unknown: the caller then quotes vLLM's last lines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

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
    (re.compile(r"(?:out of memory|OutOfMemoryError|Cannot allocate memory)", re.IGNORECASE),
     "out of memory while starting: lower GPU_MEMORY_UTILIZATION, MAX_MODEL_LEN or MAX_NUM_SEQS, "
     "or serve a smaller model (MODEL_ID)"),
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


def write_termination_message(path: str, message: str) -> None:
    """Leave the reason where Kubernetes shows it (`kubectl describe`); skip quietly where it can't.

    The kubelet mounts /dev/termination-log into the container; outside Kubernetes that
    file does not exist and is not created (a root process would litter the host's /dev).
    """
    if path == KUBERNETES_TERMINATION_LOG and not os.path.exists(path):
        return
    try:
        with open(path, "w") as handle:
            handle.write(message[:4000] + "\n")  # the kubelet keeps at most 4 KiB
    except OSError:
        pass
