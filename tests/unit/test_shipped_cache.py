"""The image's shipped compile caches: torch's ISA key, and a first start's copy, guarantee by guarantee
(entrypoint/shipped_cache.py); the warm build's plans (scripts/warm-plans.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint import shipped_cache
from entrypoint.inductor_isa import isa_key
from entrypoint.shipped_cache import INDUCTOR_SUBDIR, PARTIAL_PREFIX, seed

ROOT = Path(__file__).parents[2]
HERE_KEY = "avx512+avx512_vnni+amx_tile+bf16"


def ship(root: Path, key: str, kernels: int = 3) -> Path:
    """An image's shipped cache for `key`: Inductor's folder with a few kernels, and vLLM's model infos."""
    for n in range(kernels):
        kernel = root / key / INDUCTOR_SUBDIR / f"k{n}" / f"k{n}.so"
        kernel.parent.mkdir(parents=True)
        kernel.write_bytes(b"\x7fELF" + bytes(n))
    (root / key / "modelinfos").mkdir()
    (root / key / "modelinfos" / "gemma3.json").write_text("{}")
    return root


@pytest.fixture
def key_here(monkeypatch):
    """Stand in for the torch subprocess: the key this fake machine has."""
    asked: list[dict] = []

    def fake(python: str, env):
        asked.append(dict(env))
        return HERE_KEY

    monkeypatch.setattr(shipped_cache, "isa_key", fake)
    return asked


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- torch's key --------------------------------------------------------------------------

def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


PICKED_WITH_TEST_COMPILES = """
from torch._inductor import cpu_vec_isa as vec
def key(isa):
    words = str(isa).split() if isa else ["none"]
    words += ["bf16"] if getattr(isa, "_is_avx512_bf16_supported", False) else []
    words += ["amx_fp16"] if getattr(isa, "_is_amx_fp16_supported", False) else []
    return "+".join(words)
valid = vec.valid_vec_isa_list()  # every test compile, once
print(key(vec.pick_vec_isa()), key(vec.get_isa_from_cpu_capability("avx2", valid, vec.invalid_vec_isa)))
"""


def test_the_key_is_what_inductor_itself_picks_and_compiles_for(tmp_path):
    # The key skips torch's test compiles; Inductor's own pick runs them (into a cache of its own here).
    env = env_with(TORCHINDUCTOR_CACHE_DIR=str(tmp_path))
    native, avx2 = subprocess.run([sys.executable, "-c", PICKED_WITH_TEST_COMPILES], env=env, capture_output=True,
                                  text=True, check=True).stdout.split()
    assert isa_key(sys.executable, env) == native
    assert isa_key(sys.executable, {**env, "ATEN_CPU_CAPABILITY": "avx2"}) == avx2 == "avx2"


def test_a_key_it_cannot_tell_raises_instead_of_guessing(tmp_path):
    liar = tmp_path / "python"
    liar.write_text("#!/bin/sh\necho 'avx2; rm -rf /'\n")
    liar.chmod(0o755)
    with pytest.raises(ValueError):
        isa_key(str(liar), {})


# --- 1. only an empty cache is filled -----------------------------------------------------

def test_a_fresh_volume_gets_the_cache_for_its_isa(tmp_path, key_here):
    shipped = ship(tmp_path / "shipped", HERE_KEY)
    ship(shipped, "avx2")
    line = seed(tmp_path / "volume", shipped, sys.executable, {"ATEN_CPU_CAPABILITY": "x"})
    assert files(tmp_path / "volume") == files(shipped / HERE_KEY)
    assert f"copied the image's {HERE_KEY} cache (4 files" in line and "warm first start" in line
    assert key_here == [{"ATEN_CPU_CAPABILITY": "x"}]  # asked with vLLM's environment


def test_a_volume_with_its_own_cache_keeps_it_untouched(tmp_path, key_here):
    shipped = ship(tmp_path / "shipped", HERE_KEY)
    own = tmp_path / "volume" / INDUCTOR_SUBDIR / "mine.so"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"mine")
    line = seed(tmp_path / "volume", shipped, sys.executable, {})
    assert files(tmp_path / "volume") == [f"{INDUCTOR_SUBDIR}/mine.so"] and "not copied" in line
    assert key_here == []  # not even asked


def test_an_image_without_shipped_caches_says_nothing(tmp_path, key_here):
    assert seed(tmp_path / "volume", tmp_path / "absent", sys.executable, {}) == ""
    assert not (tmp_path / "volume").exists()


# --- 2. only the cache of the ISA torch picks here ----------------------------------------

def test_another_isas_cache_is_never_copied(tmp_path, key_here):
    shipped = ship(tmp_path / "shipped", "avx2")
    line = seed(tmp_path / "volume", shipped, sys.executable, {})
    assert not (tmp_path / "volume" / INDUCTOR_SUBDIR).exists()
    assert f"ships caches for avx2, none for this CPU ({HERE_KEY})" in line and "cold start" in line


# --- 3. whole or absent -------------------------------------------------------------------

def test_a_copy_killed_halfway_leaves_no_cache_and_the_next_start_cleans_up(tmp_path, key_here, monkeypatch):
    shipped = ship(tmp_path / "shipped", HERE_KEY)
    real_copytree = shipped_cache.shutil.copytree

    def dies_halfway(source, target, **kwargs):
        Path(target).mkdir(parents=True)
        (Path(target) / "half.so").write_bytes(b"x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shipped_cache.shutil, "copytree", dies_halfway)
    line = seed(tmp_path / "volume", shipped, sys.executable, {})
    assert "could not be copied (OSError: [Errno 28] No space left on device)" in line and "cold start" in line
    assert not (tmp_path / "volume" / INDUCTOR_SUBDIR).exists()
    monkeypatch.setattr(shipped_cache.shutil, "copytree", real_copytree)
    seed(tmp_path / "volume", shipped, sys.executable, {})
    assert files(tmp_path / "volume") == files(shipped / HERE_KEY)
    assert not list((tmp_path / "volume").glob(f"{PARTIAL_PREFIX}*"))


# --- 4. never stops a start ---------------------------------------------------------------

def test_unreadable_shipped_files_are_one_line_and_a_cold_start(tmp_path, key_here, monkeypatch):
    # copytree collects every file it could not read and raises them as one list (root reads
    # anything, so the failure is staged).
    def unreadable(source, target, **kwargs):
        raise shutil.Error([(f"{source}/k{n}.so", f"{target}/k{n}.so", f"[Errno 13] Permission denied: 'k{n}.so'")
                            for n in range(2)])

    monkeypatch.setattr(shipped_cache.shutil, "copytree", unreadable)
    line = seed(tmp_path / "volume", ship(tmp_path / "shipped", HERE_KEY), sys.executable, {})
    assert "(2 file(s) failed, the first: [Errno 13] Permission denied: 'k0.so')" in line and "\n" not in line
    assert not (tmp_path / "volume" / INDUCTOR_SUBDIR).exists()


@pytest.mark.parametrize("failure", [OSError("no python"), subprocess.TimeoutExpired("python", 120),
                                     ValueError("unexpected ISA key ''")])
def test_a_key_that_cannot_be_had_means_a_cold_start(tmp_path, monkeypatch, failure):
    def fails(python, env):
        raise failure

    monkeypatch.setattr(shipped_cache, "isa_key", fails)
    line = seed(tmp_path / "volume", ship(tmp_path / "shipped", HERE_KEY), sys.executable, {})
    assert line.startswith("compile cache: the image's cache could not be copied (") and "cold start" in line


# --- the warm build's plans ---------------------------------------------------------------

FAKE_RENDER = """
import json, sys
words = sys.argv[1:]
env = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "-e")
assert words[words.index("serve") + 1] == "render", words
print(json.dumps({"argv": ["python3", "-m", "vllm", "--port", env["PORT"]], "env": env}))
"""


def plans(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "warm-plans.py"), *args], capture_output=True,
                          text=True, cwd=tmp_path)


def test_plans_pin_what_depends_on_the_builder_and_emulate_avx2(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    done = plans(tmp_path, "out", str(weights), "native avx2 native",
                 sys.executable, "-c", FAKE_RENDER, "run", "serve", "render", "--format", "json")
    assert done.returncode == 0, done.stderr
    native = json.loads((tmp_path / "out/plans/native.json").read_text())
    avx2 = json.loads((tmp_path / "out/plans/avx2.json").read_text())
    assert native["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1" and native["env"]["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert "ATEN_CPU_CAPABILITY" not in native["env"]
    assert {k: avx2["env"][k] for k in ("DTYPE", "TORCHINDUCTOR_CPP_MARCH", "ATEN_CPU_CAPABILITY")} == {
        "DTYPE": "float32", "TORCHINDUCTOR_CPP_MARCH": "x86-64-v3", "ATEN_CPU_CAPABILITY": "avx2"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "inductor_isa.py", "plans", "warm-compile-cache.py", "weights"]
    assert (tmp_path / "out/weights/config.json").read_text() == "{}"


@pytest.mark.parametrize(("isas", "config", "variable"), [("avx9", True, "WARM_ISAS='avx9'"),
                                                         ("", True, "WARM_ISAS=''"),
                                                         ("native", False, "WARM_WEIGHTS=")])
def test_bad_plans_input_is_one_line_and_exit_2(tmp_path, isas, config, variable):
    weights = tmp_path / "weights"
    weights.mkdir()
    if config:
        (weights / "config.json").write_text("{}")
    done = plans(tmp_path, "out", str(weights), isas, "true", "serve", "render")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: {variable}")
    assert "allowed:" in done.stderr and not (tmp_path / "out").exists()
