"""Two `python -m entrypoint download` processes on one MODEL_CACHE_DIR, as two replicas on a shared volume.

Each has its own HOME (so the client's own locks there do not help): the cache's lock
alone makes the hub serve each file once, and both end with the same complete cache.
If the process holding the lock dies, the kernel frees it and the waiting one finishes
the job from the partial files. The last test does it with the real fixture weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import modelscope_hub  # noqa: F401  (a hard dependency: a broken install fails here, never skips)
import pytest

from entrypoint.weights import MARKER
from testbed.modelscope_hub import Faults, LoopbackHub
from tests.support.downloads import (
    DOWNLOAD_SECONDS,
    MODEL_ID,
    WEIGHTS,
    Download,
    served,
    small_model,
    tree,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def small_hub(tmp_path: Path, faults: Faults) -> Iterator[LoopbackHub]:
    with LoopbackHub({MODEL_ID: small_model(tmp_path / "model")}, fault=faults) as running:
        yield running


def replicas(hub: LoopbackHub, tmp_path: Path) -> tuple[Download, Download]:
    """Two downloads on one cache, each with its own HOME."""
    cache = tmp_path / "shared-cache"
    return Download(hub, cache, tmp_path / "home-a"), Download(hub, cache, tmp_path / "home-b")


def finish(process: subprocess.Popen[bytes], log: Path) -> str:
    """Wait for a background download; its output."""
    process.wait(timeout=DOWNLOAD_SECONDS)
    return log.read_text(errors="replace")


def file_requests_per_path(hub: LoopbackHub) -> Counter[str]:
    return Counter(info.file_path or "" for info in hub.history if info.kind == "file")


def assert_one_complete_cache(run: Download, outputs: list[str]) -> None:
    """Both printed the same folder, which is complete, verified and byte-identical to the hub."""
    assert {out.strip().splitlines()[-1] for out in outputs} == {str(run.folder)}, outputs
    assert (run.folder / MARKER).is_file()
    assert tree(run.folder) == served(run.hub)
    assert not any("Traceback" in out for out in outputs), outputs


@pytest.mark.parametrize("stagger", [True, False], ids=["second-starts-mid-download", "both-start-at-once"])
def test_two_downloads_on_one_cache_fetch_each_file_once(
        faults: Faults, small_hub: LoopbackHub, tmp_path: Path, stagger: bool) -> None:
    first, second = replicas(small_hub, tmp_path)
    if stagger:  # the first stalls mid-file until the second is waiting for it
        faults.on("file", WEIGHTS, stall=DOWNLOAD_SECONDS, stall_after=2**20)

    a = first.start(tmp_path / "a.log")
    if stagger:
        wait_for(lambda: file_requests_per_path(small_hub)[WEIGHTS] == 1, "the first download in the weights")
    b = second.start(tmp_path / "b.log")
    if stagger:
        wait_for(lambda: "another process is downloading" in (tmp_path / "b.log").read_text(), "the second waiting")
        small_hub.release_stalls()
    outputs = [finish(a, tmp_path / "a.log"), finish(b, tmp_path / "b.log")]

    assert (a.returncode, b.returncode) == (0, 0), outputs
    assert_one_complete_cache(first, outputs)
    assert file_requests_per_path(small_hub) == Counter(dict.fromkeys(served(small_hub), 1))
    assert small_hub.count("listing") == 1
    if stagger:
        assert "another process is downloading" in outputs[1]
        assert "completed by another process" in outputs[1]


def test_a_waiting_download_takes_over_when_the_first_is_killed(
        faults: Faults, small_hub: LoopbackHub, tmp_path: Path) -> None:
    first, second = replicas(small_hub, tmp_path)
    faults.on("file", WEIGHTS, stall=DOWNLOAD_SECONDS, stall_after=2 * 2**20)
    partial = first.folder / f"{WEIGHTS}.incomplete"

    a = first.start(tmp_path / "a.log")
    # The hub stops sending at 2 MiB, so once the partial file holds that much it holds no more.
    wait_for(lambda: partial.is_file() and partial.stat().st_size == 2 * 2**20, "the first download halfway")
    b = second.start(tmp_path / "b.log")
    wait_for(lambda: "another process is downloading" in (tmp_path / "b.log").read_text(), "the second waiting")
    os.killpg(a.pid, signal.SIGKILL)
    outputs = [finish(b, tmp_path / "b.log")]
    a.wait(timeout=DOWNLOAD_SECONDS)

    assert b.returncode == 0, outputs
    assert_one_complete_cache(second, outputs)
    weights = [info for info in small_hub.history if info.kind == "file" and info.file_path == WEIGHTS]
    assert [info.headers.get("Range") for info in weights] == [None, f"bytes={2 * 2**20}-"]
    assert file_requests_per_path(small_hub) == Counter({**dict.fromkeys(served(small_hub), 1), WEIGHTS: 2})


def test_two_downloads_of_the_real_weights_share_one_fetch(hub: LoopbackHub, tmp_path: Path) -> None:
    """The same with the real Gemma 3 fixture (hundreds of MB, so both overlap without a stall)."""
    hub.reset()
    first, second = replicas(hub, tmp_path)

    a = first.start(tmp_path / "a.log")
    b = second.start(tmp_path / "b.log")
    outputs = [finish(a, tmp_path / "a.log"), finish(b, tmp_path / "b.log")]

    assert (a.returncode, b.returncode) == (0, 0), outputs
    assert {out.strip().splitlines()[-1] for out in outputs} == {str(first.folder)}
    assert (first.folder / MARKER).is_file()
    assert {p.relative_to(first.folder).as_posix(): p.stat().st_size for p in first.folder.rglob("*")
            if p.is_file() and p.name != MARKER} == {path: f.size for path, f in hub.files[MODEL_ID].items()}
    assert file_requests_per_path(hub) == Counter(dict.fromkeys(hub.files[MODEL_ID], 1))
