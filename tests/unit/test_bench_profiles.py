"""bench/profiles.py's pure parts: ratios and verdicts against issue 8's targets, and the report from a recorded run."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from bench import profiles
from bench.common import cpu_fixture
from bench.decode_profile import engine_kwargs, group_of


def row(name: str, *, c8: float, ttft: float, tpot: float, cold: float, warm: float, dtype: str = "bfloat16") -> dict:
    serve = {key: None for key in profiles.SERVE_METRICS}
    return {"name": name, "description": f"{name} candidate", "settings": {}, "dtype": dtype, "argv": [], "env": {},
            "ready_cold_s": cold, "ready_warm_s": warm, "bytes_per_step": 536_000_000,
            "cold_log": {"compile_s": 41.5, "loaded_from_cache": False},
            "warm_log": {"compile_s": None, "loaded_from_cache": True},
            "c1": {**serve, "mean_ttft_ms": ttft, "mean_tpot_ms": tpot},
            "c8": {**serve, "mean_ttft_ms": ttft * 5, "mean_tpot_ms": tpot * 3, "output_throughput": c8}}


RECORDED = {
    "machine": {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "flags": ["avx2", "avx512f", "avx512_bf16"]},
    "vllm": "0.32.0", "started": "2026-11-25 20:00", "finished": "20:25", "bandwidth_gbps": 26.8,
    "loads": {"c1": {"num_prompts": 5, "input_len": 200, "output_len": 200, "concurrency": 1},
              "c8": {"num_prompts": 16, "input_len": 200, "output_len": 200, "concurrency": 8}},
    "targets": profiles.TARGETS,
    "candidates": [row("bare", c8=53.0, ttft=140.0, tpot=32.0, cold=80.0, warm=30.0),
                   row("auto", c8=89.0, ttft=95.0, tpot=31.0, cold=75.0, warm=15.0),
                   row("auto-float32", c8=40.0, ttft=200.0, tpot=50.0, cold=90.0, warm=20.0, dtype="float32")],
    "decode_profile": {
        "kernel_floor": {"dtype": "bfloat16", "threads": 2, "matrices": 109, "bytes": 536_000_000,
                         "pass_ms": 25.0, "tokens_per_s": 40.0, "bandwidth_gbps": 21.4},
        "engine": {"steps": 32, "prefill_ms": 90.0, "decode_step_ms": 28.0, "profiled_wall_ms": 1000.0,
                   "profiled_op_self_ms": 900.0, "ops_per_token": 33,
                   "groups_ms": {"gemm": 660.0, "attention": 50.0, "other": 50.0},
                   "top_ops": [{"name": "aten::mm", "group": "gemm", "calls": 3000, "self_ms": 780.0}]}},
}


def recorded() -> dict:
    result = copy.deepcopy(RECORDED)
    result["analysis"] = profiles.analyse(result)
    return result


def checks(result: dict) -> dict[str, dict]:
    return {c["check"]: c for c in result["analysis"]["checks"]}


def test_verdict_compares_against_the_target() -> None:
    assert profiles.verdict(2.0, 2.0) == "PASS"
    assert profiles.verdict(1.99, 2.0) == "NOT MET"
    assert profiles.verdict(None, 2.0) == "n/a"


def test_the_ratios_are_auto_over_bare_for_throughput_and_bare_over_auto_for_ttft() -> None:
    found = checks(recorded())
    throughput = found["c=8 output throughput, auto / bare"]
    ttft = found["c=1 TTFT, bare / auto"]
    assert throughput["value"] == pytest.approx(89 / 53)
    assert throughput["verdict"] == "NOT MET"
    assert ttft["value"] == pytest.approx(140 / 95)
    assert ttft["verdict"] == "NOT MET"


def test_warm_speedup_and_roofline_fraction_of_the_chosen_profile() -> None:
    found = checks(recorded())
    assert found["time to ready, cold / warm (auto)"]["value"] == pytest.approx(5.0)
    assert found["time to ready, cold / warm (auto)"]["verdict"] == "PASS"
    roof = found["decode roofline fraction (auto, c=1)"]
    bound = 26.8e9 / 536_000_000  # 50 tok/s
    assert roof["value"] == pytest.approx((1000 / 31) / bound)
    assert roof["verdict"] == "NOT MET"


def test_a_big_enough_gain_passes() -> None:
    result = copy.deepcopy(RECORDED)
    result["candidates"][0]["c8"]["output_throughput"] = 20.0
    result["candidates"][0]["c1"]["mean_ttft_ms"] = 600.0
    result["analysis"] = profiles.analyse(result)
    found = checks(result)
    assert found["c=8 output throughput, auto / bare"]["verdict"] == "PASS"
    assert found["c=1 TTFT, bare / auto"]["verdict"] == "PASS"
    assert "Why the auto/bare targets are not met" not in profiles.markdown(result)


def test_without_bare_there_is_no_auto_bare_check() -> None:
    result = copy.deepcopy(RECORDED)
    result["candidates"] = result["candidates"][1:]
    names = [c["check"] for c in profiles.analyse(result)["checks"]]
    assert names == ["time to ready, cold / warm (auto)", "decode roofline fraction (auto, c=1)"]


def test_report_has_every_candidate_the_verdicts_and_the_reason() -> None:
    text = profiles.markdown(recorded())
    for name in ("bare", "auto", "auto-float32"):
        assert f"| {name} |" in text
    assert "**NOT MET**" in text and "**PASS**" in text
    assert "Why the auto/bare targets are not met" in text
    assert "computes the checkpoint's bf16" in text  # native bf16 here: the dtype gain is 1x
    assert "| c=8 output throughput, auto / bare | 1.68x | >= 2x | **NOT MET** |" in text


def test_report_splits_one_decode_step_and_names_the_largest_part() -> None:
    result = recorded()
    split = profiles.time_split(result)
    assert split is not None
    bound_ms = 1000 / (26.8e9 / 536_000_000)  # 20 ms
    assert split["bandwidth_bound_ms"] == pytest.approx(bound_ms)
    assert split["gemm_ms"] == pytest.approx(660 / 33)
    assert split["gemm_above_bound_ms"] == pytest.approx(20.0 - bound_ms)
    assert split["engine_outside_gemm_ms"] == pytest.approx(28.0 - 20.0)
    assert split["server_layout_ms"] == pytest.approx(31.0 - 28.0)
    parts = split["bandwidth_bound_ms"] + split["gemm_above_bound_ms"] + split["engine_outside_gemm_ms"]
    assert parts + split["server_layout_ms"] == pytest.approx(split["tpot_ms"])
    text = profiles.markdown(result)
    assert "Where the time of one decode step goes" in text
    assert "the largest part (8.0 ms) is the engine's work outside the matmuls" in text
    assert "at 100% of that bandwidth" in text


def test_report_without_a_decode_profile_has_no_split() -> None:
    result = recorded()
    result["decode_profile"] = None
    assert profiles.time_split(result) is None
    assert "Where the time" not in profiles.markdown(result)


def test_plot_writes_a_png(tmp_path) -> None:
    path = tmp_path / "profiles.png"
    profiles.plot(recorded(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_candidate_exits_2_naming_the_option(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        profiles.parse_args(["--candidates", "auto", "turbo"])
    assert exited.value.code == 2
    assert "--candidates: unknown turbo; allowed: bare" in capsys.readouterr().err


def test_server_flags_become_engine_keyword_arguments() -> None:
    flags = ["--max-model-len", "4096", "--no-enable-prefix-caching", "--trust-remote-code", "--dtype", "bfloat16",
             "--seed=1024", "--enforce-eager"]
    assert engine_kwargs(flags) == {"max_model_len": 4096, "enable_prefix_caching": False,
                                    "trust_remote_code": True, "dtype": "bfloat16", "seed": 1024,
                                    "enforce_eager": True}


@pytest.mark.parametrize(("name", "group"), [("aten::mm", "gemm"), ("aten::addmm", "gemm"),
                                             ("_C::paged_attention_v1", "attention"),
                                             ("aten::argmax", "sampling"), ("aten::to", "other")])
def test_operators_fall_into_groups(name: str, group: str) -> None:
    assert group_of(name) == group


def test_a_faster_all_threads_copy_restates_the_roofline() -> None:
    result = recorded()
    result["decode_profile"]["kernel_floor"]["torch_copy_gbps"] = 53.6  # twice the one-thread probe
    text = profiles.markdown(result)
    assert "all the engine's threads the served c=1 decode reaches 32% of the bound" in text
    split = profiles.time_split(result)
    assert split is not None and split["bandwidth_bound_ms"] == pytest.approx(10.0)  # the faster copy bounds it
    result["decode_profile"]["kernel_floor"]["torch_copy_gbps"] = 27.0  # within 10 %: nothing to add
    assert "The headline roofline fraction uses the one-thread probe" not in profiles.markdown(result)


def test_warm_section_names_vllms_cache_load_failure_and_the_alternate() -> None:
    result = copy.deepcopy(RECORDED)
    chosen = result["candidates"][1]
    chosen["ready_warm_s"] = 66.0
    chosen["warm_log"] = {"compile_s": 30, "loaded_from_cache": False,
                          "cache_load_failure": "'function' object has no attribute 'finalize_loading'"}
    result["candidates"].append(row("auto-aot", c8=88.0, ttft=96.0, tpot=31.0, cold=90.0, warm=20.0))
    result["analysis"] = profiles.analyse(result)
    found = checks(result)
    assert found["time to ready, cold / warm (auto)"]["verdict"] == "NOT MET"
    assert found["time to ready, cold / warm (auto-aot)"]["verdict"] == "PASS"
    text = profiles.markdown(result)
    assert "**auto** found its AOT artifact but could not load it" in text and "finalize_loading" in text
    assert "**auto-aot** loaded its compiled graph (the AOT artifact) from the cache" in text
    assert "ready in 20.0 s against 90.0 s cold (4.50x)" in text


def test_startup_phases_come_from_vllms_log_lines(tmp_path) -> None:
    log = tmp_path / "cold.log"
    log.write_text("(APIServer pid=1) INFO 11-25 20:30:37 [api_utils.py:286] non-default args: {}\n"
                   "(EngineCore pid=2) INFO 11-25 20:31:14 [core.py:133] Initializing a V1 LLM engine (v0.32.0)\n"
                   "(Worker pid=3) INFO 11-25 20:31:21 [cpu_model_runner.py:68] Starting to load model /m...\n"
                   "(EngineCore pid=2) INFO 11-25 20:32:05 [core.py:402] init engine (profile, ...) took 44.1 s\n")
    assert profiles.startup_phases(log, 110.7) == {"engine_core_start_s": 37, "worker_start_s": 7,
                                                   "weights_compile_warmup_s": 44, "api_server_rest_s": 22.7}
    log.write_text("nothing useful\n")
    assert profiles.startup_phases(log, 10.0) is None
    assert profiles.startup_phases(tmp_path / "absent.log", 10.0) is None


def test_the_eager_start_bounds_what_a_warm_start_can_gain() -> None:
    result = copy.deepcopy(RECORDED)
    result["candidates"].append(row("auto-eager", c8=80.0, ttft=110.0, tpot=41.0, cold=46.6, warm=43.4))
    result["analysis"] = profiles.analyse(result)
    assert "ready in 43.4 s" in profiles.markdown(result)
    assert "at most 1.73x faster than the chosen profile's cold start" in profiles.markdown(result)  # 75 / 43.4


def fixture_settings(model: Path) -> dict[str, str]:
    """The settings bench/profiles.py starts from, with a model folder that passes validation."""
    (model / "config.json").write_text("{}")
    return cpu_fixture(model)


def test_a_candidate_that_renders_autos_command_is_skipped(pin_host, tmp_path):
    pin_host("avx2-amd-epyc")  # float32 is the chosen dtype there
    common = fixture_settings(tmp_path)
    names = ["bare", "auto", "auto-aot", "auto-bfloat16", "auto-float32"]

    def starts_as(name):
        return profiles.rendered(name, common, tmp_path)

    assert profiles.distinct(names, starts_as) == ["bare", "auto", "auto-aot", "auto-bfloat16"]
    pin_host("avx512bf16-amd-genoa")
    assert profiles.distinct(names, starts_as) == ["bare", "auto", "auto-aot", "auto-float32"]


def test_the_chosen_profile_renders_no_aot_artifact_and_auto_aot_the_default(pin_host, tmp_path):
    pin_host("avx2-amd-epyc")
    common = fixture_settings(tmp_path)
    env = {name: dict(profiles.rendered(name, common, tmp_path)[1]) for name in ("bare", "auto", "auto-aot")}
    assert env["auto"]["VLLM_USE_AOT_COMPILE"] == "0" and env["auto-aot"]["VLLM_USE_AOT_COMPILE"] == "1"
    assert "VLLM_USE_AOT_COMPILE" not in env["bare"]


def test_warm_lines_say_what_happened_to_the_compiled_graph() -> None:
    result = recorded()
    failed, reused = copy.deepcopy(result["candidates"][1]), copy.deepcopy(result["candidates"][1])
    failed["name"], failed["cold_log"]["aot_artifact"] = "auto-aot", "saved"
    failed["warm_log"] = {"compile_s": 69.0, "loaded_from_cache": False, "aot_artifact": "saved",
                          "cache_load_failure": "'function' object has no attribute 'finalize_loading'"}
    reused["cold_log"]["aot_artifact"] = "none"
    reused["warm_log"] = {"compile_s": 32.0, "loaded_from_cache": False, "aot_artifact": "none",
                          "cache_load_failure": None}
    result["candidates"][1:2] = [reused, failed]
    result["analysis"] = profiles.analyse(result)
    text = profiles.markdown(result)
    assert "**auto** keeps no AOT artifact: Dynamo traced again and Inductor's kernel cache" in text
    assert "compile + warm-up 32 s against 42 s cold" in text  # 41.5 rounds to 42
    assert "**auto-aot** found its AOT artifact but could not load it" in text
    assert "| time to ready, cold / warm (auto-aot) |" in text
