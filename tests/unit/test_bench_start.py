"""bench/start.py's pure parts: phases read from a stamped log, the AVX2 estimate and the report."""

from __future__ import annotations

import copy
import io
import time
from pathlib import Path

from bench import start_report
from bench.start_phases import StampedLog, compile_numbers, phases

LOG = """\
    6.900 (APIServer pid=1) INFO 12-02 06:54:04 [api_utils.py:286] non-default args: {}
    6.950 (APIServer pid=1) WARNING 12-02 06:54:04 [vllm.py:725] Model Runner V2 requires Triton
   22.000 (EngineCore pid=2) INFO 12-02 06:54:19 [core.py:133] Initializing a V1 LLM engine (v0.32.0)
   29.000 (Worker pid=3) WARNING 12-02 06:54:26 [cpu_worker.py:114] libtcmalloc is not found
   29.100 (Worker pid=3) INFO 12-02 06:54:26 [cpu_model_runner.py:68] Starting to load model /m...
   29.400 (Worker pid=3) INFO 12-02 06:54:26 [default_loader.py:501] Loading weights took 0.30 seconds
   30.600 (Worker pid=3) INFO 12-02 06:54:27 [cpu_model_runner.py:87] Warming up model for the compilation...
   35.200 [rank0]:I1202 [0/0] Step 1: torchdynamo done tracing forward (RETURN_VALUE)
   37.000 [rank0]:I1202 [0/0] fx graph cache hit for key abc
   37.100 [rank0]:I1202 [0/0] Step 2: done compiler function inductor
   39.900 (Worker pid=3) INFO 12-02 06:54:36 [cpu_model_runner.py:91] Warming up done.
   41.000 (EngineCore pid=2) INFO 12-02 06:54:38 [core.py:402] init engine (profile, create kv cache, \
warmup model) took 10.37 s
   45.900 (APIServer pid=1) INFO 12-02 06:54:42 [entry.py:136] Supported tasks: ['generate']
   50.600 (APIServer pid=1) INFO 12-02 06:54:47 [entry.py:140] Starting vLLM server on http://127.0.0.1:8123
"""


def write_log(tmp_path: Path, text: str = LOG) -> Path:
    path = tmp_path / "warm.log"
    path.write_text(text)
    return path


def test_phases_follow_the_markers_and_add_up_to_ready(tmp_path):
    split = phases(write_log(tmp_path), ready_s=51.0)
    assert split == {"api_import": 6.9, "api_config": 0.05, "engine_import": 15.05, "worker_import": 7.0,
                     "worker_init": 0.1, "weights": 1.5, "dynamo_trace": 4.6, "inductor": 1.9, "dummy_run": 2.8,
                     "kv_cache": 1.1, "engine_handoff": 4.9, "api_state": 4.7, "api_finish": 0.4}
    assert abs(sum(split.values()) - 51.0) < 0.01


def test_a_start_without_a_worker_process_puts_that_span_in_the_next_phase(tmp_path):
    # two processes: the worker's lines come from the engine core
    text = "\n".join(line for line in LOG.splitlines() if "(Worker pid" not in line or "Starting" in line)
    split = phases(write_log(tmp_path, text.replace("(Worker pid=3)", "(EngineCore pid=2)")), ready_s=51.0)
    assert "worker_import" not in split and split["worker_init"] == 7.1


def test_compile_numbers_say_whether_inductor_hit_its_cache(tmp_path):
    numbers = compile_numbers(write_log(tmp_path))
    assert numbers == {"engine_init_s": 10.37, "weights_s": 0.3, "fx_graph_cache": "hit"}


def test_stamped_log_puts_the_seconds_since_spawn_in_front_of_each_line():
    sink = io.StringIO()
    StampedLog(sink, started=time.monotonic() - 2).write("hello\n")
    seconds, text = sink.getvalue().split(maxsplit=1)
    assert 2 <= float(seconds) < 60 and text == "hello\n"


def start(ready: float, **phase: float) -> dict:
    return {"ready_s": ready, "phases": phase, "compile": {}, "argv": []}


def load(tpot: float, c8: float) -> dict:
    return {"c1": {"mean_ttft_ms": 100.0, "mean_tpot_ms": tpot}, "c8": {"output_throughput": c8}}


RECORDED = {
    "machine": {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "flags": ["avx512f"]},
    "vllm": "0.32.0", "started": "2026-12-02 07:50", "finished": "08:15",
    "loads": {"c1": {"num_prompts": 5, "input_len": 200, "output_len": 200, "concurrency": 1},
              "c8": {"num_prompts": 16, "input_len": 200, "output_len": 200, "concurrency": 8}},
    "candidates": [
        {"name": "auto", "description": "default", "settings": {}, "env": {}, "first": "cold",
         "cold": start(100.0, api_import=10.0, engine_import=20.0, worker_import=10.0, weights=50.0, api_finish=10.0),
         "warm": {**start(50.0, api_import=10.0, engine_import=15.0, worker_import=10.0, weights=5.0,
                          api_finish=10.0), **load(30.0, 90.0)}},
        {"name": "two-process", "description": "two", "settings": {}, "env": {"X": "0"}, "first": "cold",
         "cold": start(90.0, api_import=10.0, engine_import=20.0, weights=50.0, api_finish=10.0),
         "warm": {**start(40.0, api_import=10.0, engine_import=15.0, weights=5.0, api_finish=10.0),
                  **load(30.5, 80.0)}},
    ],
}
AVX2 = {"machine": {"cpu": "AMD EPYC", "flags": ["avx2"]},
        "cold": {"ready_s": 200.0, "phases": {"engine_core_start_s": 40, "worker_start_s": 20,
                                              "weights_compile_warmup_s": 100, "api_server_rest_s": 40}},
        "warm": {"ready_s": 100.0, "phases": {"engine_core_start_s": 30, "worker_start_s": 20,
                                              "weights_compile_warmup_s": 10, "api_server_rest_s": 40}},
        "c1_tpot_ms": 113.0, "c1_ttft_ms": 400.0, "c8_tok_s": 24.0}


def analysed(monkeypatch) -> dict:
    monkeypatch.setattr(start_report, "avx2_reference", lambda: AVX2)
    result = copy.deepcopy(RECORDED)
    result["analysis"] = start_report.analyse(result)
    return result


def test_the_avx2_estimate_scales_each_phase_by_the_defaults_ratio(monkeypatch):
    entries = analysed(monkeypatch)["analysis"]["candidates"]
    assert entries["auto"]["avx2_warm_s"] == 100.0 and entries["auto"]["avx2_first_s"] == 200.0
    # the worker phase is gone, so are its AVX2 seconds (20 of the default's 100 warm)
    assert entries["two-process"]["avx2_warm_s"] == 80.0 and entries["two-process"]["avx2_first_s"] == 180.0


def test_a_throughput_drop_beyond_the_noise_is_a_loss(monkeypatch):
    entry = analysed(monkeypatch)["analysis"]["candidates"]["two-process"]
    assert round(entry["c8_change"], 3) == -0.111 and entry["no_loss"] is False


def test_the_report_names_every_candidate_phase_and_verdict(monkeypatch):
    text = start_report.markdown(analysed(monkeypatch))
    assert "| two-process | cold | 90.0 | 40.0 |" in text
    assert "**NOT MET** (<= 30)" in text and "**LOSS**" in text
    assert "platforms/cpu.py:409" in text and "sleep mode is not available" in text
    assert "| auto warm | 10.0 | · |" in text
