"""The perf workloads: bench command lines, the server's engine flags, and parsing vLLM's recorded result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from verification import perf
from verification.perf_report import perf_markdown

SAMPLES = Path(__file__).parent / "perf_samples"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


# --- commands ----------------------------------------------------------------------------------

@pytest.mark.parametrize("platform", ["cpu", "npu"])
def test_engine_args_are_the_servers_without_launcher_and_serve_only_flags(platform: str) -> None:
    settings = load_settings({"PLATFORM": platform, "DTYPE": "float32", "ENFORCE_EAGER": "true",
                              "MAX_MODEL_LEN": "4096", "EXTRA_ARGS": "--long-prefill-token-threshold 2"})
    engine = perf.engine_args(render_command(settings, "/models/m").argv)
    assert engine[0].startswith("--")
    for serve_only in ("--model", "/models/m", "--host", "--port", "--served-model-name", "0.0.0.0", "8000"):
        assert serve_only not in engine
    text = " ".join(engine)
    assert "--dtype float32" in text and "--max-model-len 4096" in text and "--enforce-eager" in text
    assert "--seed 1024" in text and text.endswith("--long-prefill-token-threshold 2")  # EXTRA_ARGS stay last


@pytest.mark.parametrize(("platform", "server_share", "expected"), [
    ("cpu", 0.9, []), ("npu", 0.9, ["--gpu-memory-utilization", "0.05"]),
    ("cuda", 0.5, ["--gpu-memory-utilization", "0.25"]), ("npu", 0.99, ["--gpu-memory-utilization", "0.05"])])
def test_in_process_bench_leaves_the_servers_device_memory(platform: str, server_share: float,
                                                           expected: list[str]) -> None:
    assert perf.shared_device_args(platform, server_share) == expected


def test_serve_command_fixes_lengths_seed_concurrency_and_keeps_details(tmp_path: Path) -> None:
    load = perf.BenchLoad(100, 200, 200, 8)
    command = perf.serve_command(load, "http://h:1", "name", Path("/m"), tmp_path / "online.json", 1024, warmups=2)
    text = " ".join(command)
    for part in ("bench serve", "--base-url http://h:1", "--model name", "--tokenizer /m", "--dataset-name random",
                 "--random-input-len 200", "--random-output-len 200", "--random-range-ratio 0", "--ignore-eos",
                 "--num-prompts 100", "--seed 1024", "--max-concurrency 8", "--save-result", "--save-detailed",
                 f"--result-dir {tmp_path}", "--result-filename online.json", "--num-warmups 2"):
        assert part in text


def test_api_key_reaches_the_bench_client_only_when_set() -> None:
    assert "OPENAI_API_KEY" not in perf.bench_env({"PATH": "/bin"}, None)
    assert perf.bench_env({"PATH": "/bin"}, "k")["OPENAI_API_KEY"] == "k"


def test_presets_match_the_guide() -> None:
    guide = perf.PRESETS["guide"]
    assert guide.throughput == perf.BenchLoad(16, 200, 200)
    assert guide.online == perf.BenchLoad(100, 200, 200, 8)
    assert guide.latency == perf.BenchLoad(10, 200, 200, 1)
    assert [load.concurrency for load in guide.sweep] == [1, 2, 4, 8, 16, 32]


# --- parsing recorded vLLM results ----------------------------------------------------------------

def test_parse_throughput_takes_vllms_rates_and_printed_output_tokens() -> None:
    result = sample("throughput.json")
    output = (SAMPLES / "throughput.log").read_text()
    parsed = perf.parse_throughput(result, output, perf.BenchLoad(4, 32, 32))
    assert parsed["requests_per_s"] == result["requests_per_second"]
    assert parsed["total_tokens_per_s"] == result["tokens_per_second"]
    assert parsed["output_tokens"] == 4 * 32
    assert parsed["output_tokens_per_s"] == pytest.approx(128 / result["elapsed_time"])


def test_parse_throughput_without_printed_count_assumes_full_outputs() -> None:
    parsed = perf.parse_throughput(sample("throughput.json"), "", perf.BenchLoad(4, 32, 32))
    assert parsed["output_tokens"] == 4 * 32


def test_parse_serve_keeps_vllms_statistics_and_per_request_latencies() -> None:
    result = sample("serve.json")
    parsed = perf.parse_serve(result)
    assert parsed["request_throughput"] == result["request_throughput"]
    assert parsed["mean_e2el_ms"] == result["mean_e2el_ms"] and parsed["p99_e2el_ms"] == result["p99_e2el_ms"]
    assert len(parsed["requests"]) == result["completed"]
    first = parsed["requests"][0]
    assert first["e2e_ms"] == pytest.approx(result["latencies"][0] * 1000)
    assert first["ttft_ms"] == pytest.approx(result["ttfts"][0] * 1000)
    mean_tpot = sum(r["tpot_ms"] for r in parsed["requests"]) / len(parsed["requests"])
    assert mean_tpot == pytest.approx(result["mean_tpot_ms"], rel=1e-6)  # our per-request TPOT is vLLM's


def test_guide_names_of_a_serve_result() -> None:
    parsed = perf.parse_serve(sample("serve.json"))
    online = perf.online_metrics(parsed)
    assert online["output_token_throughput"] == parsed["output_throughput"]
    assert online["mean_latency_ms"] == parsed["mean_e2el_ms"]
    latency = perf.latency_metrics(parsed)
    assert latency["median_total_ms"] == parsed["median_e2el_ms"] and latency["mean_tpot_ms"] == parsed["mean_tpot_ms"]


def test_failed_requests_are_left_out_of_the_per_request_latencies() -> None:
    result = sample("serve.json")
    result["errors"] = ["boom", *result["errors"][1:]]
    assert len(perf.parse_serve(result)["requests"]) == result["completed"] - 1


def test_parse_latency_in_ms() -> None:
    result = sample("latency.json")
    parsed = perf.parse_latency(result)
    assert parsed["iterations"] == len(result["latencies"])
    assert parsed["mean_total_ms"] == pytest.approx(result["avg_latency"] * 1000)
    assert parsed["median_total_ms"] == pytest.approx(result["percentiles"]["50"] * 1000)


def test_report_puts_the_guide_and_ours_side_by_side() -> None:
    serve = perf.parse_serve(sample("serve.json"))
    load = {"num_prompts": 3, "input_len": 32, "output_len": 32, "concurrency": 1}
    data = {"environment": {"date": "d", "platform": "cpu", "weights": "/w", "dtype": "float32",
                            "versions": {"vllm": "0.32.0"}, "hardware": {"cpu": "c", "cores": 2, "cpu_flags": [],
                                                                         "memory_gib": 1}},
            "preset": "quick", "url": "http://h:1", "served_model_name": "gemma", "engine_args": ["--dtype", "float32"],
            "results": {"online": {**serve, "load": load, "guide_metrics": perf.online_metrics(serve)}}}
    markdown = perf_markdown(data)
    assert "| request_throughput (req/s) | 0.34 |" in markdown
    assert "weights: `/w`; dtype: float32" in markdown
    assert "## 5.1" not in markdown  # only what was run
