"""The doctor on fixture hosts: a healthy tree per platform, then one failure class at a time.

Device nodes are plain files, npu-smi is a script printing output recorded from
vllm-ascend issues, driver and toolkit version files are copies of real ones.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from entrypoint.cli import main
from entrypoint.doctor import HostTree, failures, report, run_checks
from entrypoint.resolver import load_settings

HERE = Path(__file__).parent
RECORDED = HERE / "doctor"
CPUINFO = HERE / "cpuinfo"
SHM_1G = "shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=1048576k 0 0\n"
SHM_64M = "shm /dev/shm tmpfs rw,nosuid,nodev,noexec,relatime,size=65536k 0 0\n"


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def script(path: Path, body: str) -> None:
    touch(path, f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def npu_smi(root: Path, recorded: str, status: int = 0) -> None:
    script(root / "usr/local/bin/npu-smi", f"cat '{RECORDED / recorded}'\nexit {status}")


def npu_host(root: Path, cards: tuple[int, ...] = (0, 1)) -> Path:
    """An Ascend container as vllm-ascend's docker run makes it."""
    for card in cards:
        touch(root / f"dev/davinci{card}")
    for node in ("davinci_manager", "devmm_svm", "hisi_hdc"):
        touch(root / f"dev/{node}")
    touch(root / "usr/local/Ascend/driver/lib64/driver/libascend_hal.so")
    touch(root / "usr/local/Ascend/driver/version.info", (RECORDED / "version.info").read_text())
    touch(root / "usr/local/Ascend/ascend-toolkit/latest/aarch64-linux/ascend_toolkit_install.info",
          (RECORDED / "ascend_toolkit_install.info").read_text())
    touch(root / "proc/self/mounts", SHM_1G)
    npu_smi(root, "npu-smi-info.txt")
    return root


def settings_for(tmp_path: Path, platform: str, **extra: str):
    env = {"PLATFORM": platform, "MODEL_CACHE_DIR": str(tmp_path / "cache"), "STATE_DIR": str(tmp_path / "state"),
           "CPU_TUNING": "off", **extra}
    if platform == "npu":
        env.setdefault("ASCEND_LOG_PATH", str(tmp_path / "plog"))
    return load_settings(env)


def statuses(findings, check: str) -> list[str]:
    return [f.status for f in findings if f.check == check]


def npu_findings(tmp_path: Path, environ: dict[str, str] | None = None, **settings: str):
    tree = HostTree(tmp_path / "host", environ or {}, run_tools=True)
    return run_checks(settings_for(tmp_path, "npu", **settings), tree)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return npu_host(tmp_path / "host")


def test_a_healthy_npu_container_passes_every_check(tmp_path, host):
    findings = npu_findings(tmp_path, {"ASCEND_VISIBLE_DEVICES": "0,1", "ASCEND_RT_VISIBLE_DEVICES": "0,1"},
                            TENSOR_PARALLEL_SIZE="2")
    assert {f.status for f in findings} == {"OK"}, report(findings, as_json=False)
    assert len({f.check for f in findings}) >= 11


@pytest.mark.parametrize(("breakage", "check"), [
    (lambda root: (root / "dev/davinci1").unlink(), "npu-devices"),
    (lambda root: (root / "dev/devmm_svm").unlink(), "npu-control-nodes"),
    (lambda root: (root / "usr/local/Ascend/driver/lib64/driver/libascend_hal.so").unlink(), "npu-driver-libs"),
    (lambda root: npu_smi(root, "npu-smi-8005.txt", status=255), "npu-card-free"),
    (lambda root: npu_smi(root, "npu-smi-card1-busy.txt"), "npu-card-free"),
    (lambda root: npu_smi(root, "npu-smi-info.txt", status=3), "npu-smi"),
    (lambda root: touch(root / "proc/self/mounts", SHM_64M), "shm"),
])
def test_each_npu_failure_class_fails_its_check(tmp_path, host, breakage, check):
    breakage(host)
    findings = npu_findings(tmp_path, {"ASCEND_RT_VISIBLE_DEVICES": "0,1"}, TENSOR_PARALLEL_SIZE="2")
    assert statuses(findings, check) == ["FAIL"], report(findings, as_json=False)
    failed = failures(findings)
    assert all(f.fix and "\n" not in f.line() for f in failed)


def test_a_hung_npu_smi_is_cut_at_the_timeout(tmp_path, host):
    script(host / "usr/local/bin/npu-smi", "exec sleep 30")
    findings = run_checks(settings_for(tmp_path, "npu"), HostTree(host, {}, timeout=0.5, run_tools=True))
    assert statuses(findings, "npu-smi") == ["FAIL"]
    assert "did not answer within" in next(f.detail for f in findings if f.check == "npu-smi")


def test_a_busy_card_outside_the_visible_ones_is_not_reported(tmp_path, host):
    npu_smi(host, "npu-smi-card1-busy.txt")
    findings = npu_findings(tmp_path, {"ASCEND_RT_VISIBLE_DEVICES": "0"})
    assert statuses(findings, "npu-card-free") == ["OK"]


def test_missing_npu_smi_and_version_info_warn_only(tmp_path, host):
    (host / "usr/local/bin/npu-smi").unlink()
    (host / "usr/local/Ascend/driver/version.info").unlink()
    findings = npu_findings(tmp_path)
    assert statuses(findings, "npu-smi") == ["WARN"] and statuses(findings, "npu-driver-version") == ["WARN"]
    assert not failures(findings)


def test_a_driver_older_than_the_images_cann_warns(tmp_path, host):
    touch(host / "usr/local/Ascend/driver/version.info", "Version=24.1.rc3\n")
    findings = npu_findings(tmp_path)
    finding = next(f for f in findings if f.check == "npu-driver-version")
    assert finding.status == "WARN" and "24.1.rc3" in finding.detail and "8.5.1" in finding.detail


@pytest.mark.parametrize(("environ", "status"), [
    ({"ASCEND_VISIBLE_DEVICES": "0", "ASCEND_RT_VISIBLE_DEVICES": "1"}, "WARN"),
    ({"ASCEND_RT_VISIBLE_DEVICES": "zero"}, "FAIL"),
    ({"ASCEND_VISIBLE_DEVICES": "1,0", "ASCEND_RT_VISIBLE_DEVICES": "0,1"}, "OK"),
])
def test_visible_device_variables(tmp_path, host, environ, status):
    assert statuses(npu_findings(tmp_path, environ), "visible-devices") == [status]


def test_fewer_cards_than_tp_times_dp_fail(tmp_path, host):
    findings = npu_findings(tmp_path, {"ASCEND_RT_VISIBLE_DEVICES": "0"}, TENSOR_PARALLEL_SIZE="2")
    assert statuses(findings, "npu-card-count") == ["FAIL"]


def test_an_unwritable_default_plog_folder_fails(tmp_path, host):
    touch(host / "home/user/ascend")  # a file where the folder must be
    findings = run_checks(settings_for(tmp_path, "npu").model_copy(update={"ascend_log_path": None}),
                          HostTree(host, {"HOME": "/home/user"}, run_tools=True))
    assert statuses(findings, "ascend-log") == ["FAIL"]


def test_unwritable_cache_fails(tmp_path, host):
    # A file where MODEL_CACHE_DIR must be a folder, in the tree --root names.
    touch(host / str(tmp_path / "cache").lstrip("/"))
    findings = npu_findings(tmp_path)
    assert statuses(findings, "writable") == ["FAIL"]
    assert "MODEL_CACHE_DIR" in failures(findings)[0].detail


@pytest.mark.parametrize(("environ", "detail"), [
    ({"HCCL_CONNECT_TIMEOUT": "30"}, "HCCL_CONNECT_TIMEOUT"),
    ({"HCCL_EXEC_TIMEOUT": "forever"}, "HCCL_EXEC_TIMEOUT"),
    ({"HCCL_SOCKET_IFNAME": "bond0"}, "no interface bond0"),
    ({"HCCL_IF_IP": "10.0.0.300"}, "HCCL_IF_IP"),
])
def test_hccl_and_network_variables_when_tp_above_one(tmp_path, host, environ, detail):
    touch(host / "sys/class/net/eth0/address")
    findings = npu_findings(tmp_path, {"ASCEND_RT_VISIBLE_DEVICES": "0,1", **environ}, TENSOR_PARALLEL_SIZE="2")
    assert statuses(findings, "hccl") == ["FAIL"] and detail in failures(findings)[0].detail
    single = npu_findings(tmp_path, environ)
    assert statuses(single, "hccl") == []  # one card: HCCL is not used


def test_cuda_nodes_and_nvidia_smi(tmp_path):
    root = tmp_path / "host"
    touch(root / "proc/self/mounts", SHM_1G)
    findings = run_checks(settings_for(tmp_path, "cuda"), HostTree(root, {}, run_tools=True))
    assert statuses(findings, "cuda-devices") == ["FAIL"] and statuses(findings, "nvidia-smi") == ["WARN"]
    touch(root / "dev/nvidiactl")
    touch(root / "dev/nvidia0")
    script(root / "usr/bin/nvidia-smi", "echo \"NVIDIA-SMI has failed because it couldn't communicate with the "
           "NVIDIA driver.\"; exit 9")
    findings = run_checks(settings_for(tmp_path, "cuda"), HostTree(root, {}, run_tools=True))
    assert statuses(findings, "cuda-devices") == ["OK"] and statuses(findings, "nvidia-smi") == ["FAIL"]


def cpu_host(root: Path, cpuinfo: str, meminfo: str = "meminfo-24g.meminfo") -> Path:
    touch(root / "proc/cpuinfo", cpuinfo)
    touch(root / "proc/meminfo", (CPUINFO / meminfo).read_text())
    touch(root / "proc/self/mounts", SHM_1G)
    return root


def test_cpu_without_avx2_fails_and_with_it_passes(tmp_path):
    avx2 = (CPUINFO / "avx2-amd-epyc.cpuinfo").read_text()
    settings = settings_for(tmp_path, "cpu")
    good = run_checks(settings, HostTree(cpu_host(tmp_path / "good", avx2), {}))
    assert not failures(good)
    bad = run_checks(settings, HostTree(cpu_host(tmp_path / "bad", avx2.replace(" avx2", "")), {}))
    assert statuses(bad, "cpu-isa") == ["FAIL"]


def test_cpu_kv_cache_larger_than_memory_fails(tmp_path):
    root = cpu_host(tmp_path / "host", (CPUINFO / "avx2-amd-epyc.cpuinfo").read_text(), "meminfo-4g.meminfo")
    settings = settings_for(tmp_path, "cpu", VLLM_CPU_KVCACHE_SPACE="16")
    findings = run_checks(settings, HostTree(root, {}, run_tools=True))
    assert statuses(findings, "cpu-memory") == ["FAIL"]


def test_small_shm_only_warns_for_one_worker(tmp_path):
    root = cpu_host(tmp_path / "host", (CPUINFO / "avx2-amd-epyc.cpuinfo").read_text())
    touch(root / "proc/self/mounts", "shm /dev/shm tmpfs rw,size=16m 0 0\n")
    findings = run_checks(settings_for(tmp_path, "cpu"), HostTree(root, {}, run_tools=True))
    assert statuses(findings, "shm") == ["WARN"]


def test_this_machine_passes_the_cpu_checks(tmp_path):
    """The test bed and the CPU container must not be stopped by the doctor."""
    assert not failures(run_checks(settings_for(tmp_path, "cpu"), HostTree()))


def test_cli_prints_the_table_or_json_and_exits_2_on_a_fail(tmp_path, host, capsys, monkeypatch):
    for name, value in {"PLATFORM": "npu", "MODEL_CACHE_DIR": str(tmp_path / "c"), "STATE_DIR": str(tmp_path / "s"),
                        "ASCEND_LOG_PATH": str(tmp_path / "p")}.items():
        monkeypatch.setenv(name, value)
    assert main(["doctor", "--root", str(host), "--run-tools"]) == 0
    assert "OK   npu-devices" in capsys.readouterr().out
    (host / "dev/hisi_hdc").unlink()
    assert main(["doctor", "--json", "--root", str(host), "--run-tools"]) == 2
    assert '"status": "FAIL"' in capsys.readouterr().out


# --- a tree that fights back (issue 30, class 5) ---------------------------------------------

def test_a_hostile_tree_neither_hangs_nor_tracebacks_nor_runs_its_binaries(tmp_path, host):
    import os
    version = host / "usr/local/Ascend/driver/version.info"
    version.unlink()
    os.mkfifo(version)  # opened for reading, a FIFO blocks forever
    (host / "proc/self/mounts").unlink()
    (host / "proc/self/mounts").symlink_to("/dev/zero")  # read whole, it eats memory
    toolkit = next(host.glob("usr/local/Ascend/ascend-toolkit/latest/*/ascend_toolkit_install.info"))
    toolkit.write_bytes(b"version=\xff\xfe8.5\n")  # not UTF-8
    ran = tmp_path / "ran"
    script(host / "usr/local/bin/npu-smi", f"touch '{ran}'")
    findings = run_checks(settings_for(tmp_path, "npu"), HostTree(host, {}))
    assert findings and not ran.exists()
    assert any("--run-tools" in f.detail or "--run-tools" in f.fix for f in findings if f.check == "npu-smi")


def test_with_a_root_nothing_is_written_outside_it(tmp_path, host):
    settings = settings_for(tmp_path, "npu")
    run_checks(settings, HostTree(host, {}))
    for folder in (settings.model_cache_dir, settings.state_dir, settings.ascend_log_path):
        assert not folder.exists()


def test_a_check_that_hangs_is_cut_at_its_time_limit(monkeypatch, tmp_path, host):
    import threading

    from entrypoint import doctor

    never = threading.Event()
    monkeypatch.setattr(doctor, "CHECK_TIMEOUT", 0.2)
    monkeypatch.setitem(doctor.CHECKS, "npu", (lambda settings, host: never.wait() and [],))
    (finding,) = run_checks(settings_for(tmp_path, "npu"), HostTree(host, {}))
    assert finding.status == "WARN" and "did not finish" in finding.detail
