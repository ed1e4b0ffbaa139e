"""perf_eval's command line: user mistakes exit 2 in one line, a server that is down exits 1 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.net import free_port
from verification import perf_cli


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    return folder


@pytest.fixture(autouse=True)
def cpu_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLATFORM", "cpu")
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = perf_cli.main(argv)
    return status, capsys.readouterr().err.strip().splitlines()


def test_unknown_workload_exits_2_naming_option_value_and_allowed(model_dir: Path, capsys) -> None:
    status, err = run(["--only", "online,warp", "--model", str(model_dir)], capsys)
    assert status == 2
    assert err == ["error: --only='online,warp': unknown workload warp; allowed: a comma-separated subset of "
                   "throughput,online,latency,sweep"]


def test_model_folder_without_config_exits_2(tmp_path: Path, capsys) -> None:
    status, err = run(["--only", "throughput", "--model", str(tmp_path)], capsys)
    assert status == 2
    assert len(err) == 1 and f"--model={tmp_path}" in err[0] and "config.json" in err[0]


def test_server_down_exits_1_in_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, err = run(["--only", "online", "--url", url, "--model", str(model_dir),
                       "--results", str(tmp_path / "results")], capsys)
    assert status == 1
    assert len(err) == 1 and f"no server answers at {url}/v1/models" in err[0]
    assert not (tmp_path / "results").exists()  # nothing measured, no empty run folder


def test_bad_setting_exits_2(model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DTYPE", "float8")
    status, err = run(["--only", "throughput", "--model", str(model_dir)], capsys)
    assert status == 2 and err[0].startswith("error: DTYPE='float8'")


def test_sweep_levels_keep_the_presets_loads_in_its_order() -> None:
    quick = perf_cli.perf.PRESETS["quick"]
    narrowed = perf_cli.with_sweep_levels(quick, "2,1")
    assert narrowed.sweep == quick.sweep[:2] and narrowed.online == quick.online
    assert perf_cli.with_sweep_levels(quick, None) is quick


def test_a_sweep_level_outside_the_preset_exits_2(model_dir: Path, capsys) -> None:
    status, err = run(["--preset", "quick", "--sweep-levels", "1,8", "--model", str(model_dir)], capsys)
    assert status == 2
    assert err == ["error: --sweep-levels='1,8': allowed: a comma-separated subset of the quick preset's levels 1,2,4"]
