"""`python -m entrypoint download` against a loopback hub, as the fault and shared-cache tests run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from entrypoint.weights import MARKER, PARTIAL_SUFFIX
from testbed.modelscope_hub import LoopbackHub
from testbed.servers import NETGUARD

ROOT = Path(__file__).parents[2]
MODEL_ID = "google/gemma-3-270m-it"
WEIGHTS = "sub/weights.bin"
WEIGHTS_SIZE = 4 * 2**20 + 17  # several of the client's 1 MiB chunks plus an odd tail
DOWNLOAD_COMMAND = (sys.executable, "-m", "entrypoint", "download")
DOWNLOAD_SECONDS = 180  # bounds a hang only; a download here takes a few seconds


def small_model(root: Path) -> Path:
    """A model folder small enough to download in a second: config, tokenizer, 4 MB of weights in a subfolder."""
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (root / "tokenizer.json").write_text(json.dumps({"version": "1.0", "vocab": list(range(100))}))
    (root / WEIGHTS).write_bytes(os.urandom(WEIGHTS_SIZE))
    return root


@dataclass(frozen=True)
class Download:
    """Where one `entrypoint download` process writes, and how it is started."""

    hub: LoopbackHub
    cache: Path
    home: Path
    revision: str = "master"

    @property
    def folder(self) -> Path:
        """The model folder inside MODEL_CACHE_DIR (as entrypoint.weights.cache_folder names it)."""
        return self.cache / "models" / MODEL_ID / self.revision

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: the settings, a private HOME, the network guard."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
        return {**keep, "HOME": str(self.home), "PYTHONPATH": f"{NETGUARD}:{ROOT}", "PYTHONUNBUFFERED": "1",
                "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false", "PLATFORM": "cpu", "MODEL_ID": MODEL_ID,
                "MODEL_REVISION": self.revision, "MODEL_CACHE_DIR": str(self.cache),
                "MODELSCOPE_ENDPOINT": self.hub.endpoint, "STATE_DIR": str(self.home / "state"), **extra}

    def run(self, **extra: str) -> subprocess.CompletedProcess[str]:
        """Download and wait."""
        return subprocess.run(DOWNLOAD_COMMAND, cwd=ROOT, env=self.env(**extra),
                              capture_output=True, text=True, timeout=DOWNLOAD_SECONDS, check=False)

    def start(self, log: Path, **extra: str) -> subprocess.Popen[bytes]:
        """Download in the background, in its own process group, output to `log`."""
        with log.open("wb") as out:
            return subprocess.Popen(DOWNLOAD_COMMAND, cwd=ROOT,
                                    env=self.env(**extra), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)


def error_lines(stderr: str) -> list[str]:
    """The lines the entrypoint prints for a failure."""
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root` but the marker, keyed by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARKER}


def served(hub: LoopbackHub) -> dict[str, bytes]:
    """What the hub serves for MODEL_ID, keyed by repo path."""
    return {path: f.source.read_bytes() for path, f in hub.files[MODEL_ID].items()}


def partials(folder: Path) -> list[Path]:
    """Partial files the client left in `folder`."""
    return sorted(folder.rglob(f"*{PARTIAL_SUFFIX}"))


def assert_complete(proc: subprocess.CompletedProcess[str], run: Download) -> None:
    """Exit 0, the folder printed, byte-identical to the hub, a marker, no partial files, no traceback."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(run.folder)
    assert (run.folder / MARKER).is_file()
    assert tree(run.folder) == served(run.hub)
    assert partials(run.folder) == []
    assert "Traceback" not in proc.stderr and "netguard" not in proc.stderr


def assert_failed_cleanly(proc: subprocess.CompletedProcess[str], run: Download, *fragments: str) -> str:
    """A non-zero exit with exactly one error line holding `fragments`, no traceback, no marker; the line."""
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = error_lines(proc.stderr)
    for fragment in fragments:
        assert fragment in line, line
    assert not (run.folder / MARKER).exists()
    return line


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until `condition` holds; DOWNLOAD_SECONDS only bounds a hang."""
    deadline = time.monotonic() + DOWNLOAD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {DOWNLOAD_SECONDS} s: {what}")
        time.sleep(0.05)
