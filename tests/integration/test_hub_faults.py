"""Hub faults against `python -m entrypoint download` and the real modelscope client.

Each fault ends either in a complete, verified cache (retries, resume) or in one
error line and a non-zero exit, and never in a folder marked complete that is not.
The loopback hub serves a 4 MB model so each case takes seconds; no vLLM is started.

Faults covered (hub side, see testbed.modelscope_hub.Faults):

- bursts of 503 on the listing and on every file (retried), and 503 without end (fails);
- the connection dropped mid-file (resumed with a Range request);
- a response stalled mid-file past the client's read timeout (abandoned, resumed);
- a corrupted file, once (refetched) and on every request (fails on the sha256);
- the hub down (connection refused): one line naming MODELSCOPE_ENDPOINT;
- unsafe names in the file listing (`../`, absolute paths): refused before any file request,
  and a listing that turns unsafe after the check is never asked for;
- the downloader SIGKILLed halfway: no marker; a rerun resumes the partial file and an
  already complete revision in the same cache stays untouched;
- a full disk (a small tmpfs): refused before the first byte when the model cannot fit,
  and reported as such when the disk fills up mid-file; a rerun with room completes.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import modelscope_hub  # noqa: F401  (a hard dependency: a broken install fails here, never skips)
import pytest

from entrypoint.weights import MARKER
from testbed.modelscope_hub import Faults, LoopbackHub, Reply, RequestInfo
from tests.support.downloads import (
    DOWNLOAD_COMMAND,
    DOWNLOAD_SECONDS,
    MODEL_ID,
    ROOT,
    WEIGHTS,
    Download,
    assert_complete,
    assert_failed_cleanly,
    partials,
    served,
    small_model,
    tree,
    wait_for,
)

pytestmark = pytest.mark.integration

FAIL_FAST = {"DOWNLOAD_RETRIES": "2"}  # the whole-download retry backs off 2 s; failing cases need not wait longer


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def hub(tmp_path: Path, faults: Faults) -> Iterator[LoopbackHub]:
    """The small model at master and v1, with the test's faults."""
    with LoopbackHub({MODEL_ID: small_model(tmp_path / "model")}, revisions=("master", "v1"), fault=faults) as running:
        yield running


@pytest.fixture
def run(hub: LoopbackHub, tmp_path: Path) -> Download:
    return Download(hub, tmp_path / "cache", tmp_path / "home")


def file_requests(hub: LoopbackHub, path: str = WEIGHTS) -> list[RequestInfo]:
    return [info for info in hub.history if info.kind == "file" and info.file_path == path]


# --- transient faults end in a complete, verified cache --------------------------------------------------


def test_503_bursts_are_retried_to_a_complete_cache(faults: Faults, hub: LoopbackHub, run: Download) -> None:
    faults.on("listing", times=2, status=503)
    for path in served(hub):
        faults.on("file", path, times=3, status=503)

    assert_complete(run.run(), run)
    for path in served(hub):
        assert [info.status for info in file_requests(hub, path)][-1] == 200
        assert faults.used("file", path) == 3


def test_connection_dropped_mid_file_is_resumed_to_a_complete_cache(
        faults: Faults, hub: LoopbackHub, run: Download) -> None:
    faults.on("file", WEIGHTS, times=2, drop_after=1_500_000)

    assert_complete(run.run(), run)
    first, second, third = file_requests(hub)
    assert "Range" not in first.headers
    assert second.headers["Range"] == "bytes=1500000-"  # every byte received was kept
    assert (third.headers["Range"], third.status) == ("bytes=3000000-", 206)


def test_stalled_response_times_out_and_is_resumed(faults: Faults, hub: LoopbackHub, run: Download) -> None:
    faults.on("file", WEIGHTS, times=1, stall=120, stall_after=2 * 2**20)

    # The client's own idle read timeout (60 s by default) is the knob; 2 s keeps the test short.
    proc = run.run(MODELSCOPE_DOWNLOAD_TIMEOUT="2")

    assert_complete(proc, run)
    _stalled, resumed = file_requests(hub)
    assert resumed.headers["Range"] == f"bytes={2 * 2**20}-" and resumed.status == 206


def test_corrupted_file_once_is_refetched_to_a_verified_cache(
        faults: Faults, hub: LoopbackHub, run: Download) -> None:
    faults.on("file", WEIGHTS, times=1, corrupt=True)

    assert_complete(run.run(), run)
    assert len(file_requests(hub)) == 2


# --- lasting faults end in one error line, a non-zero exit and no marker ---------------------------------


def test_503_without_end_fails_with_one_error_line(faults: Faults, hub: LoopbackHub, run: Download) -> None:
    faults.on("file", WEIGHTS, times=None, status=503)

    assert_failed_cleanly(run.run(**FAIL_FAST), run, f"MODEL_ID={MODEL_ID}", f"MODELSCOPE_ENDPOINT={hub.endpoint}",
                          "DOWNLOAD_RETRIES", WEIGHTS, "503")
    assert not (run.folder / WEIGHTS).exists()


def test_corrupted_file_every_time_fails_on_the_hash(faults: Faults, hub: LoopbackHub, run: Download) -> None:
    faults.on("file", WEIGHTS, times=None, corrupt=True)

    assert_failed_cleanly(run.run(**FAIL_FAST), run, f"MODEL_ID={MODEL_ID}", WEIGHTS, "Hash mismatch")
    # The corrupt bytes never take the file's name, so nothing can mistake them for the weights.
    assert not (run.folder / WEIGHTS).exists()


@pytest.mark.parametrize("name", ["../escape.bin", "sub/../../escape.bin", "/tmp/escape.bin"])
def test_unsafe_names_in_the_listing_are_refused(faults: Faults, hub: LoopbackHub, run: Download,
                                                 name: str) -> None:
    faults.on("listing", times=None, extra_entries=(
        {"Name": "escape.bin", "Path": name, "Type": "blob", "Size": 5, "Sha256": "0" * 64},))

    assert_failed_cleanly(run.run(**FAIL_FAST), run, f"MODEL_ID={MODEL_ID}", "outside the model folder", name)
    assert hub.count("file") == 0
    assert not (run.cache / "models" / MODEL_ID / "escape.bin").exists()


def test_listing_turning_unsafe_after_the_check_is_never_read(
        faults: Faults, hub: LoopbackHub, run: Download) -> None:
    # A hub that answers the check honestly and a second listing with an escape would have the client
    # write outside the folder (it joins listed paths as they are); the client downloads the checked one.
    faults.on("listing", times=1).on("listing", times=None, extra_entries=(
        {"Name": "escape.bin", "Path": "../../escape.bin", "Type": "blob", "Size": 5, "Sha256": "0" * 64},))

    assert_complete(run.run(), run)
    assert hub.count("listing") == 1
    assert {info.file_path for info in hub.history if info.kind == "file"} == set(served(hub))


def test_hub_down_fails_with_one_line_naming_the_endpoint(hub: LoopbackHub, tmp_path: Path) -> None:
    run = Download(hub, tmp_path / "cache", tmp_path / "home")
    endpoint, env = hub.endpoint, run.env()
    hub.stop()  # nothing listens on the port any more: connection refused

    proc = subprocess.run(DOWNLOAD_COMMAND, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=DOWNLOAD_SECONDS, check=False)
    assert_failed_cleanly(proc, run, "model hub unreachable", f"MODELSCOPE_ENDPOINT={endpoint}",
                          f"MODEL_ID={MODEL_ID}")


# --- a killed downloader ---------------------------------------------------------------------------------


def test_sigkill_halfway_leaves_no_marker_and_a_rerun_resumes(
        faults: Faults, hub: LoopbackHub, run: Download, tmp_path: Path) -> None:
    other = Download(hub, run.cache, run.home, revision="v1")
    assert_complete(other.run(), other)
    other_before = {**tree(other.folder), MARKER: (other.folder / MARKER).read_bytes()}
    hub.reset()
    faults.on("file", WEIGHTS, times=1, stall=120, stall_after=2 * 2**20)
    partial = run.folder / f"{WEIGHTS}.incomplete"

    process = run.start(tmp_path / "killed.log")
    try:
        # The hub stops sending at 2 MiB. The client's buffered writer may keep the last few KiB
        # it read until it closes the file, so "halfway" is a first MiB on disk, not exactly 2 MiB.
        wait_for(lambda: partial.is_file() and partial.stat().st_size >= 2**20, "half the weights on disk")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DOWNLOAD_SECONDS)

    assert process.returncode == -signal.SIGKILL
    assert not (run.folder / MARKER).exists()
    kept = partial.stat().st_size
    hub.reset()

    assert_complete(run.run(), run)
    (resumed,) = file_requests(hub)
    assert resumed.headers["Range"] == f"bytes={kept}-"
    assert {**tree(other.folder), MARKER: (other.folder / MARKER).read_bytes()} == other_before


# --- a full disk -----------------------------------------------------------------------------------------


def mount_tmpfs(mount_point: Path, size: str) -> None:
    """Mount a tmpfs of `size` there, or skip the test saying why not."""
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        # RLIMIT_FSIZE would give EFBIG, not ENOSPC, so it is no stand-in for a full disk.
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A small disk: a 3 MB tmpfs the test may grow with `mount -o remount,size=...`."""
    mount_point = tmp_path / "small-disk"
    mount_tmpfs(mount_point, "3m")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Take all but `leave` bytes of the disk, as another writer on the volume would."""
    filler = disk / "other-writer.bin"
    with filler.open("wb", buffering=0) as out:  # unbuffered: no failing flush left for close()
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with filler.open("r+b") as out:
        out.truncate(filler.stat().st_size - leave)
    return filler


def test_full_disk_is_refused_before_the_first_byte(hub: LoopbackHub, disk: Path, tmp_path: Path) -> None:
    run = Download(hub, disk / "cache", tmp_path / "home")

    assert_failed_cleanly(run.run(), run, "no space left on device", f"MODEL_CACHE_DIR={run.cache}", "need 5 MB")
    assert hub.count("file") == 0


def test_disk_filling_up_mid_download_fails_clearly_and_a_rerun_with_room_completes(
        faults: Faults, hub: LoopbackHub, disk: Path, tmp_path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
    run = Download(hub, disk / "cache", tmp_path / "home")
    fillers: list[Path] = []

    def fill_when_the_weights_start(info: RequestInfo) -> Reply | None:
        # The free-space check has passed; now another writer takes the room, leaving half the weights.
        if info.kind == "file" and info.file_path == WEIGHTS and not fillers:
            fillers.append(fill(disk, leave=2 * 2**20))
        return faults(info)

    hub.fault = fill_when_the_weights_start
    assert_failed_cleanly(run.run(), run, "no space left on device", f"MODEL_CACHE_DIR={run.cache}")
    assert len(file_requests(hub)) == 1  # a full disk is not retried
    assert partials(run.folder)  # kept, to resume once there is room

    fillers[0].unlink()
    hub.reset()
    assert_complete(run.run(), run)
    (resumed,) = file_requests(hub)
    assert resumed.headers["Range"].startswith("bytes=")
