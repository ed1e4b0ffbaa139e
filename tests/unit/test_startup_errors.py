"""Known vLLM start failures, from real vLLM 0.32 CPU output, become one line naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.startup_errors import classify, write_termination_message

LOGS = Path(__file__).parent / "startup_logs"

CASES = [
    ("toolong.log", "MAX_MODEL_LEN=65536 is longer than the model allows (32768.0): lower MAX_MODEL_LEN"),
    ("badflag.log", "vLLM does not know --no-such-flag: fix or remove it in EXTRA_ARGS"),
    ("noweights.log", "no weight files in /tmp/fail/noweights: MODEL_SOURCE points at an incomplete model folder"),
    ("badarch.log", "this vLLM cannot serve the architecture 'FooBarForCausalLM' of MODEL_ID"),
    # vllm-ascend's run-time failures, recorded from its FAQ and issues
    ("npu-oom.log", "NPU 0 ran out of memory (tried to allocate 3.47 GiB): lower GPU_MEMORY_UTILIZATION"),
    ("graph-capture-207008.log", "ACL graph capture ran out of NPU stream resources (error 207008)"),
    ("hccl-timeout.log", "an HCCL ALLREDUCE waited 3600000 ms and timed out"),
    ("hccl-socket.log", "HCCL ranks could not connect (EI0006)"),
    ("shm-broadcast.log", "vLLM's workers stopped answering its broadcast queue for 60 s or more"),
]


@pytest.mark.parametrize(("log", "expected"), CASES)
def test_recorded_failures_are_explained(log, expected):
    reason = classify((LOGS / log).read_text().splitlines())
    assert reason is not None and reason.startswith(expected) and "\n" not in reason


@pytest.mark.parametrize("line", [
    "ValueError: To serve at least one request with the model's max seq len (32768), (3.0 GiB KV cache is needed",
    "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
])
def test_memory_failures_name_a_memory_setting(line):
    reason = classify([line])
    assert reason and ("MAX_MODEL_LEN" in reason or "GPU_MEMORY_UTILIZATION" in reason)


def test_unknown_failures_stay_unknown():
    assert classify(["Traceback (most recent call last):", "RuntimeError: something new"]) is None


def test_termination_message_is_written_and_unwritable_is_ignored(tmp_path):
    path = tmp_path / "termination-log"
    write_termination_message(str(path), "x" * 5000)
    assert len(path.read_text()) == 4001
    write_termination_message(str(tmp_path / "missing" / "log"), "ignored")  # no exception


@pytest.mark.parametrize(("line", "expected"), [
    ("The error from device(chipId:0, dieId:0), serial number is 12, hccl fftsplus task timeout occurred during "
     "task execution, stream_id:9, sq_id:9, task_id:51052, stuck notify num:1, timeout=1836s.",
     "an HCCL task hung for 1836 s (HCCL_EXEC_TIMEOUT)"),
    ("[rank3]: Communication_Error_Get_Socket(EI0006)", "HCCL ranks could not connect (EI0006)"),
])
def test_hccl_one_line_failures(line, expected):
    assert (classify([line]) or "").startswith(expected)
