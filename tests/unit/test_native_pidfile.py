"""`make down ENGINE=native` signals only the supervisor `make up` started (issue 30, class 9)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts native.sh needs: its .run/ is the copy's, not this checkout's."""
    (tmp_path / "scripts").mkdir()
    for name in ("native.sh", "paths.sh"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    (tmp_path / ".run").mkdir()
    return tmp_path


def down(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/native.sh", "down"], cwd=root, capture_output=True, text=True, timeout=30)


def test_a_pid_now_owned_by_another_process_is_not_signalled(tmp_path):
    root = checkout(tmp_path)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for text in (f"{bystander.pid}\n", f"{bystander.pid} 1\n", "1; touch x\n"):
            (root / ".run/serve.pid").write_text(text)
            done = down(root)
            assert done.returncode == 0 and bystander.poll() is None
            assert not (root / ".run/serve.pid").exists() and not (root / "x").exists()
            assert done.stderr.count("\n") <= 1 and "signalled nothing" in done.stderr
    finally:
        bystander.kill()


def test_the_recorded_supervisor_is_stopped(tmp_path):
    root = checkout(tmp_path)
    # Not this test's child: `down` waits for the pid to vanish, and an unreaped child never does.
    pid = int(subprocess.run(["bash", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True,
                             text=True, check=True).stdout)
    start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    (root / ".run/serve.pid").write_text(f"{pid} {start}\n")
    done = down(root)
    assert done.returncode == 0 and "stopped" in done.stdout
    assert not Path(f"/proc/{pid}").exists()
