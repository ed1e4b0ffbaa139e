"""The CPU profile: recorded /proc samples in, measured defaults out; the user's values win;
the NPU and CUDA variants render and validate, and the NPU default stays the guide's."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from entrypoint.cpu_features import GIB, parse_cgroup_limit, parse_cpuinfo, parse_meminfo, read_host
from entrypoint.cpu_tuning import choose, cpu_list, explain
from entrypoint.default_layers import TEMPLATES_DIR, variant_names
from entrypoint.errors import SettingsError
from entrypoint.render import render_command
from entrypoint.resolver import load_settings
from entrypoint.settings import Settings
from tests.unit.conftest import SAMPLES, sample_host

ROOT = Path(__file__).parents[2]
# sample -> (isa, native bf16, logical CPUs, physical cores, the dtype the profile picks, Inductor's -march)
CPUS = {
    "avx2-amd-epyc": ("avx2", False, 2, 2, "float32", "x86-64-v3"),
    "avx512-skylake-sp": ("avx512", False, 4, 2, "float32", "x86-64-v4"),
    "avx512bf16-amd-genoa": ("avx512_bf16", True, 4, 2, "bfloat16", "x86-64-v4"),
    "amx-sapphire-rapids": ("amx", True, 4, 2, "bfloat16", "x86-64-v4"),
}


def chosen(host) -> dict[str, str]:
    return {c.setting: c.value for c in choose(host, Settings())}


# --- reading the machine ---------------------------------------------------------------

@pytest.mark.parametrize("sample", CPUS)
def test_cpuinfo_samples_parse(sample):
    cpu = parse_cpuinfo((SAMPLES / f"{sample}.cpuinfo").read_text())
    isa, bf16, logical, physical, *_ = CPUS[sample]
    assert (cpu.isa, cpu.native_bf16, cpu.logical_cpus, cpu.physical_cores) == (isa, bf16, logical, physical)
    assert "avx2" in cpu.flags and cpu.model


def test_meminfo_reads_available_memory():
    assert parse_meminfo((SAMPLES / "meminfo-4g.meminfo").read_text()) == 2871236 * 1024
    assert parse_meminfo("MemTotal: 100 kB\nMemFree: 40 kB\n") == 40 * 1024
    assert parse_meminfo("") == 0


def test_cgroup_limit():
    assert parse_cgroup_limit("max\n") is None and parse_cgroup_limit("4294967296\n") == 4 * GIB


def test_empty_cpuinfo_is_no_features():
    cpu = parse_cpuinfo("")
    assert cpu.isa == "baseline" and not cpu.native_bf16 and cpu.logical_cpus == 0


def test_live_host_reads():
    host = read_host()  # imported before the pin: the real machine
    assert host.usable_cpu_ids and host.available_bytes > 0 and host.cpu.logical_cpus >= 1


# --- the choices ----------------------------------------------------------------------------

@pytest.mark.parametrize("sample", CPUS)
def test_dtype_follows_native_bf16(sample):
    assert chosen(sample_host(sample))["DTYPE"] == CPUS[sample][4]


@pytest.mark.parametrize("sample", CPUS)
def test_inductor_compiles_for_the_cpus_portable_level(sample):
    assert chosen(sample_host(sample))["TORCHINDUCTOR_CPP_MARCH"] == CPUS[sample][5]


def test_below_avx2_torchs_own_march_stays():
    host = sample_host("avx2-amd-epyc")
    host = replace(host, cpu=replace(host.cpu, flags=host.cpu.flags - {"avx2"}))
    assert "TORCHINDUCTOR_CPP_MARCH" not in chosen(host)


@pytest.mark.parametrize(("memory", "gib"), [("meminfo-24g", 4), ("meminfo-4g", 1)])
def test_kv_cache_is_a_quarter_of_available_memory(memory, gib):
    assert chosen(sample_host(memory=memory))["VLLM_CPU_KVCACHE_SPACE"] == str(gib)


def test_kv_cache_is_capped():
    host = sample_host()
    big = replace(host, available_bytes=512 * GIB)
    assert chosen(big)["VLLM_CPU_KVCACHE_SPACE"] == "8"


def test_small_host_binds_every_core_and_reserves_none():
    choices = chosen(sample_host())
    assert (choices["VLLM_CPU_OMP_THREADS_BIND"], choices["VLLM_CPU_NUM_OF_RESERVED_CPU"]) == ("0-1", "0")


def test_smt_siblings_are_left_out_as_vllm_does():
    # 4 logical CPUs on 2 cores: 0 and 2 share core 0, 1 and 3 share core 1
    assert sample_host("avx512-skylake-sp").one_cpu_per_core() == [0, 1]
    assert chosen(sample_host("avx512-skylake-sp"))["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"


def test_a_cpuset_is_bound_as_given():
    host = replace(sample_host("avx512-skylake-sp"), usable_cpu_ids=(2, 3))
    assert chosen(host)["VLLM_CPU_OMP_THREADS_BIND"] == "2-3"


@pytest.mark.parametrize("usable", [(0,), tuple(range(16))])
def test_one_core_or_a_big_host_keeps_vllms_auto_binding(usable):
    choices = chosen(replace(sample_host(), usable_cpu_ids=usable))
    assert choices["VLLM_CPU_OMP_THREADS_BIND"] == "auto" and "VLLM_CPU_NUM_OF_RESERVED_CPU" not in choices


def test_several_ranks_keep_vllms_auto_binding():
    choices = {c.setting: c.value for c in choose(sample_host(), Settings(TENSOR_PARALLEL_SIZE=2))}
    assert choices["VLLM_CPU_OMP_THREADS_BIND"] == "auto"


def test_the_cpu_steps_1024_tokens_and_the_users_budget_wins():
    assert chosen(sample_host())["MAX_NUM_BATCHED_TOKENS"] == "1024"
    assert load_settings({"PLATFORM": "cpu"}).max_num_batched_tokens == 1024
    assert load_settings({"PLATFORM": "cpu", "MAX_NUM_BATCHED_TOKENS": "4096"}).max_num_batched_tokens == 4096
    assert load_settings({"PLATFORM": "cpu", "CPU_TUNING": "off"}).max_num_batched_tokens == 4096


def test_the_token_budget_covers_every_sequence_and_a_whole_prompt_without_chunking():
    assert {c.setting: c.value for c in choose(sample_host(), Settings(MAX_NUM_SEQS=2048))}[
        "MAX_NUM_BATCHED_TOKENS"] == "2048"
    assert "MAX_NUM_BATCHED_TOKENS" not in {c.setting for c in choose(sample_host(),
                                                                       Settings(ENABLE_CHUNKED_PREFILL=False))}
    unchunked = load_settings({"PLATFORM": "cpu", "ENABLE_CHUNKED_PREFILL": "false", "MAX_MODEL_LEN": "4096"})
    assert unchunked.max_num_batched_tokens == 4096


@pytest.mark.parametrize("sample", CPUS)
def test_every_cpu_gets_a_compile_cache_that_reloads(sample):
    assert chosen(sample_host(sample))["VLLM_USE_AOT_COMPILE"] == "false"


def test_no_aot_artifact_renders_as_0_and_the_users_choice_as_1(pin_host):
    pin_host("avx2-amd-epyc")
    assert render_command(load_settings({"PLATFORM": "cpu"}), "/m").env["VLLM_USE_AOT_COMPILE"] == "0"
    mine = load_settings({"PLATFORM": "cpu", "VLLM_USE_AOT_COMPILE": "true"})
    assert render_command(mine, "/m").env["VLLM_USE_AOT_COMPILE"] == "1"
    assert "VLLM_USE_AOT_COMPILE" not in render_command(load_settings({"PLATFORM": "cpu", "CPU_TUNING": "off"}),
                                                       "/m").env


def test_cpu_list_syntax():
    assert (cpu_list([0, 1]), cpu_list([5, 0, 1, 2]), cpu_list([0, 2, 4])) == ("0-1", "0-2,5", "0,2,4")


def test_every_choice_says_why():
    for sample in CPUS:
        for choice in choose(sample_host(sample), Settings()):
            assert choice.reason and choice.setting.isupper()
    reasons = {c.setting: c.evidence for c in choose(sample_host("avx512bf16-amd-genoa"), Settings())}
    assert "bench/results/cpu-dtype.md" in reasons["DTYPE"]
    assert "bench/results/profiles.md" in reasons["VLLM_USE_AOT_COMPILE"]
    assert "bench/results/start.md" in reasons["MAX_NUM_BATCHED_TOKENS"]
    assert "bench/results/start-warm.md" in reasons["TORCHINDUCTOR_CPP_MARCH"]


# --- the layer -----------------------------------------------------------------------------

def test_cpu_layer_applies_the_choices(pin_host):
    pin_host("amx-sapphire-rapids", "meminfo-4g")
    s = load_settings({"PLATFORM": "cpu"})
    assert (s.dtype, s.vllm_cpu_kvcache_space, s.vllm_cpu_omp_threads_bind) == ("bfloat16", 1, "0-1")
    env = render_command(s, "/m").env
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_the_users_values_win(pin_host):
    pin_host("amx-sapphire-rapids")
    s = load_settings({"PLATFORM": "cpu", "DTYPE": "float32", "VLLM_CPU_KVCACHE_SPACE": "3",
                       "VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"})
    assert (s.dtype, s.vllm_cpu_kvcache_space, s.vllm_cpu_omp_threads_bind) == ("float32", 3, "0-1")
    env = render_command(s, "/m").env
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


@pytest.mark.parametrize("mine", [{"VLLM_CPU_OMP_THREADS_BIND": "auto"}, {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}])
def test_a_user_binding_setting_keeps_the_other_one_too(mine):
    s = load_settings({"PLATFORM": "cpu", **mine})
    unset = ({"VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU"} - set(mine)).pop()
    assert s.public_dict()[unset] is None


def test_a_malformed_parallel_size_is_a_settings_error_not_a_crash():
    with pytest.raises(SettingsError, match="TENSOR_PARALLEL_SIZE='two'"):
        load_settings({"PLATFORM": "cpu", "TENSOR_PARALLEL_SIZE": "two"})


def test_a_profile_value_wins_over_the_tuning(tmp_path):
    templates = tmp_path / "templates"
    subprocess.run(["cp", "-r", str(TEMPLATES_DIR), str(templates)], check=True)
    (templates / "models" / "tiny.yaml").write_text("settings:\n  MODEL_ID: a/tiny\nplatforms:\n  cpu:\n"
                                                     "    DTYPE: float16\n")
    s = load_settings({"PLATFORM": "cpu", "MODEL_PROFILE": "tiny"}, templates_dir=templates)
    assert s.dtype == "float16" and s.vllm_cpu_kvcache_space == 4


def test_tuning_off_gives_the_platform_file_and_vllm_defaults():
    s = load_settings({"PLATFORM": "cpu", "CPU_TUNING": "off"})
    assert (s.dtype, s.vllm_cpu_kvcache_space, s.vllm_cpu_omp_threads_bind) == (None, 2, None)
    assert "--dtype" not in render_command(s, "/m").argv


@pytest.mark.parametrize("platform", ["npu", "cuda"])
def test_no_cpu_tuning_on_accelerators(platform, pin_host):
    pin_host("amx-sapphire-rapids")
    s = load_settings({"PLATFORM": platform})
    assert s.dtype is None and s.vllm_cpu_kvcache_space is None and s.vllm_cpu_omp_threads_bind is None
    assert "VLLM_USE_AOT_COMPILE" not in render_command(s, "/m").env


def test_explain_names_choices_and_overrides():
    host = sample_host("avx512bf16-amd-genoa")
    lines = explain(choose(host, Settings()), {"DTYPE": "float32", "VLLM_CPU_KVCACHE_SPACE": 4,
                                       "VLLM_CPU_OMP_THREADS_BIND": "auto"})
    assert lines[0].startswith("cpu tuning: DTYPE=float32 kept from your settings") and "bfloat16" in lines[0]
    assert lines[1].startswith("cpu tuning: VLLM_CPU_KVCACHE_SPACE=4: a quarter")


@pytest.mark.parametrize(("name", "value"), [("CPU_TUNING", "on"), ("VLLM_CPU_OMP_THREADS_BIND", "0-3,x"),
                                             ("VLLM_CPU_NUM_OF_RESERVED_CPU", "-1"),
                                             ("VLLM_USE_AOT_COMPILE", "sometimes")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError) as caught:
        load_settings({"PLATFORM": "cpu", name: value})
    assert caught.value.message.startswith(f"{name}={value!r}") and "allowed:" in caught.value.message


def test_thread_bind_accepts_vllm_lists():
    for value in ("auto", "nobind", "0-3", "0,2,4-7", "0-3|4-7"):
        assert load_settings({"PLATFORM": "cpu", "VLLM_CPU_OMP_THREADS_BIND": value}).vllm_cpu_omp_threads_bind == value


@pytest.mark.parametrize("sample", CPUS)
def test_a_start_logs_one_line_a_decision_without_figures_or_paths(sample):
    """The measurements stay in bench/results/ (not in the image); the log says what was chosen and why."""
    choices = choose(sample_host(sample), Settings())
    lines = explain(choices, {c.setting: c.value for c in choices})
    assert len(lines) == len({c.reason for c in choices})
    for line in lines:
        assert not re.search(r"bench/|\.md\b|\d(\.\d+)?x\b| ms\b|tok/s|\d+ vs \d+", line), line


def test_cli_prints_the_reasons_on_stderr():
    done = subprocess.run([sys.executable, "-m", "entrypoint", "render"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PLATFORM": "cpu", "DTYPE": "float16"}, timeout=60)
    assert done.returncode == 0 and "--dtype float16" in done.stdout  # a dtype the profile never picks
    assert "cpu tuning: DTYPE=float16 kept from your settings" in done.stderr
    assert "cpu tuning: VLLM_CPU_KVCACHE_SPACE=" in done.stderr and "cpu tuning" not in done.stdout


# --- NPU and CUDA variants -----------------------------------------------------------------

VARIANTS = [(p, v) for p in ("npu", "cuda") for v in variant_names(TEMPLATES_DIR, p)]


def test_both_accelerators_have_variants():
    names = {p: variant_names(TEMPLATES_DIR, p) for p in ("npu", "cuda")}
    assert {"eager", "piecewise", "prefix-caching", "high-concurrency"} <= set(names["npu"]) & set(names["cuda"])


@pytest.mark.parametrize(("platform", "variant"), VARIANTS)
def test_variant_renders_validates_and_says_unmeasured(platform, variant):
    text = (TEMPLATES_DIR / "platforms" / platform / f"{variant}.yaml").read_text()
    assert "UNMEASURED" in text and "https://" in text
    base = render_command(load_settings({"PLATFORM": platform}), "/m")
    command = render_command(load_settings({"PLATFORM": platform, "PLATFORM_VARIANT": variant}), "/m")
    assert command.argv != base.argv and command.env == base.env


@pytest.mark.parametrize(("variant", "flag"), [("eager", "--enforce-eager"),
                                               ("prefix-caching", "--enable-prefix-caching")])
def test_npu_variants_set_their_knob(variant, flag):
    argv = render_command(load_settings({"PLATFORM": "npu", "PLATFORM_VARIANT": variant}), "/m").argv
    assert flag in argv


def test_npu_piecewise_variant_swaps_the_graph_mode():
    argv = render_command(load_settings({"PLATFORM": "npu", "PLATFORM_VARIANT": "piecewise"}), "/m").argv
    assert argv[argv.index("--compilation-config") + 1] == '{"cudagraph_mode":"PIECEWISE"}'
    assert argv[argv.index("--additional-config") + 1] == '{"enable_cpu_binding":true}'


def test_user_value_wins_over_a_variant():
    s = load_settings({"PLATFORM": "npu", "PLATFORM_VARIANT": "high-concurrency", "MAX_NUM_SEQS": "64"})
    assert (s.max_num_seqs, s.max_num_batched_tokens) == (64, 8192)


def test_empty_variant_is_the_guides_command():
    guide = render_command(load_settings({"PLATFORM": "npu"}), "/m")
    assert render_command(load_settings({"PLATFORM": "npu", "PLATFORM_VARIANT": ""}), "/m") == guide


@pytest.mark.parametrize(("platform", "allowed"), [("npu", "eager, fast-start, full-and-piecewise"),
                                                   ("cpu", "none (cpu has no variants)")])
def test_unknown_variant_exits_2_with_one_line(platform, allowed):
    done = subprocess.run([sys.executable, "-m", "entrypoint", "render"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PLATFORM": platform, "PLATFORM_VARIANT": "turbo"}, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith(f"error: PLATFORM_VARIANT='turbo': no such variant for {platform}; "
                                                   f"allowed: {allowed}")
    assert "Traceback" not in done.stderr
