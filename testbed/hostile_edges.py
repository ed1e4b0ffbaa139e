"""Hostile input, round three: the edges around the settings, by class (issue 30).

Each case builds its input in a fresh folder and returns the command to run on it. A case is
handled when the command exits with an allowed code within the hang guard, prints no
traceback, prints one line (or, for a command whose output is a table, any number), prints
none of the case's secrets, and leaves its post-condition true (nothing written where it
must not be, no bystander signalled). bench/hostile.py runs every case for
bench/reliability.md; tests/unit/test_hostile_edges.py runs the first of each class.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import NamedTuple

from testbed import hostile_state
from testbed.paths import ROOT

SECRET = "sk-r3-0123456789abcdef"
TOKEN = "ms-r3-fedcba9876543210"
Check = Callable[[Path], str | None]  # None: the post-condition holds; else what broke


class EdgeCase(NamedTuple):
    kind: str
    name: str
    prepare: Callable[[Path], list[str]]
    exits: frozenset[int]
    one_line: bool = True
    secrets: tuple[str, ...] = ()
    check: Check | None = None
    bound_s: float | None = None


class Servers(NamedTuple):
    echo: str  # a hub that answers 403 with the request it got, headers and body
    trickle: str  # a server that sends its answer a byte at a time
    huge: str  # a server whose answer never ends


def entrypoint(env: dict[str, str], *args: str, folder: Path) -> list[str]:
    """`python -m entrypoint ARGS` in a clean environment: HOME and the caches in `folder`."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "PYTHONPATH": str(ROOT),
            "MODEL_CACHE_DIR": str(folder / "cache"), "STATE_DIR": str(folder / "state"), "CPU_TUNING": "off"}
    return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in {**base, **env}.items()), sys.executable, "-m",
            "entrypoint", *args]


def render(**env: str) -> Callable[[Path], list[str]]:
    return lambda folder: entrypoint({"PLATFORM": "npu", **env}, "render", folder=folder)


def refused(kind: str, cases: dict[str, dict[str, str]], secrets: tuple[str, ...] = ()) -> list[EdgeCase]:
    return [EdgeCase(kind, name, render(**env), frozenset({2}), secrets=secrets) for name, env in cases.items()]


# --- 1. secrets in error text ---------------------------------------------------------------

def secrets_cases(servers: Servers) -> list[EdgeCase]:
    kind = "secrets in error text"
    cases = refused(kind, {
        "EXTRA_ARGS with an unclosed quote": {"EXTRA_ARGS": f"--api-key '{SECRET}"},
        "EXTRA_ARGS with a dangling backslash": {"EXTRA_ARGS": f"--api-key {SECRET} \\"},
        "EXTRA_ARGS with an unclosed double quote": {"EXTRA_ARGS": f'--hf-token "{SECRET}'},
        "EXTRA_ARGS with the key first": {"EXTRA_ARGS": f"{SECRET} --x"},
        "MODELSCOPE_ENDPOINT password with a space": {"MODELSCOPE_ENDPOINT": f"http://u:{SECRET} x@hub.example"},
        "MODELSCOPE_ENDPOINT token in its query": {"MODELSCOPE_ENDPOINT": f"http://hub.example/?token={SECRET}"},
        "MODELSCOPE_ENDPOINT password and a bad port": {"MODELSCOPE_ENDPOINT": f"http://u:{SECRET}@h:99999"},
        "MODELSCOPE_ENDPOINT password, ftp": {"MODELSCOPE_ENDPOINT": f"ftp://u:{SECRET}@hub.example"},
        "API_KEY beside a bad setting": {"API_KEY": SECRET, "MAX_NUM_SEQS": "many"},
        "MODELSCOPE_TOKEN beside a bad setting": {"MODELSCOPE_TOKEN": SECRET, "PORT": "http"},
        "API_KEY with a space": {"API_KEY": f"{SECRET} x"},
    }, secrets=(SECRET,))

    def download(folder: Path) -> list[str]:
        return entrypoint({"PLATFORM": "cpu", "MODELSCOPE_ENDPOINT": servers.echo, "MODELSCOPE_TOKEN": TOKEN,
                           "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false", "DOWNLOAD_RETRIES": "1"}, "download",
                          folder=folder)
    return [*cases, EdgeCase(kind, "a hub that echoes the request in its error", download, frozenset({1, 2}),
                             one_line=False, secrets=(TOKEN,), bound_s=120)]


# --- 2. managed flags through a side door ------------------------------------------------------

def managed_flag_cases(servers: Servers) -> list[EdgeCase]:
    flags = ("-n2", "-r1", "-n=2", "-r=1", "--nnod 2", "--node-r=1", "-tp=2", "--tensor-parallel 2", "--port=1",
             "--max-model-l 8", f"--api-k={SECRET}", "--data-parallel-si 2", "--served-model=x")
    return refused("managed flags in EXTRA_ARGS", {flag: {"EXTRA_ARGS": flag} for flag in flags}, (SECRET,))


# --- 3. numbers ----------------------------------------------------------------------------------

INTEGERS = ("PORT", "MAX_NUM_SEQS", "MAX_MODEL_LEN", "MAX_NUM_BATCHED_TOKENS", "TENSOR_PARALLEL_SIZE",
            "DATA_PARALLEL_SIZE", "SEED", "OMP_NUM_THREADS", "METRICS_PORT", "SMOKE_MAX_TOKENS", "DOWNLOAD_RETRIES",
            "HCCL_BUFFSIZE", "VLLM_CPU_KVCACHE_SPACE")


def number_cases(servers: Servers) -> list[EdgeCase]:
    values = {"5,000 digits": "9" * 5000, "4,301 digits signed": "+" + "1" * 4301, "full-width": "\uff18",
              "superscript": "\u00b2"}
    return refused("numbers", {f"{name} {label}": {name: value} for name in INTEGERS
                               for label, value in values.items()})


# --- 4. values that cannot work ------------------------------------------------------------------

def shape_cases(servers: Servers) -> list[EdgeCase]:
    return refused("shapes that cannot work", {
        "HOST=::1%]x": {"HOST": "::1%]x"}, "HOST=127.0.0.1%eth0": {"HOST": "127.0.0.1%eth0"},
        "HOST=::1%": {"HOST": "::1%"}, "METRICS_PORT equal to PORT": {"METRICS_PORT": "8000"},
        "PORT equal to METRICS_PORT": {"PORT": "9464"}, "MULTI_NODE_PORT equal to PORT": {"MULTI_NODE_PORT": "8000"},
        **{f"{name} with a trailing space": {name: "/tmp/x "} for name in
           ("MODEL_CACHE_DIR", "STATE_DIR", "COMPILE_CACHE_DIR", "ASCEND_LOG_PATH", "API_KEY_FILE")},
        "MODEL_CACHE_DIR with a leading space": {"MODEL_CACHE_DIR": " /tmp/x"},
        "STATE_DIR with an escape": {"STATE_DIR": "/tmp/\x1b[2Jx"},
        "TERMINATION_LOG relative": {"TERMINATION_LOG": "termination.log"},
    })


# --- 5. the doctor on a hostile tree ------------------------------------------------------------

def npu_tree(root: Path) -> Path:
    for node in ("davinci0", "davinci_manager", "devmm_svm", "hisi_hdc"):
        (root / "dev").mkdir(parents=True, exist_ok=True)
        (root / "dev" / node).touch()
    (root / "usr/local/Ascend/driver/lib64").mkdir(parents=True)
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mounts").write_text("shm /dev/shm tmpfs rw,size=1048576k 0 0\n")
    return root


def doctor_case(name: str, spoil: Callable[[Path], None]) -> EdgeCase:
    def prepare(folder: Path) -> list[str]:
        tree = npu_tree(folder / "host")
        spoil(tree)
        return entrypoint({"PLATFORM": "npu", "MODEL_CACHE_DIR": str(folder / "out/cache"),
                           "STATE_DIR": str(folder / "out/state"), "ASCEND_LOG_PATH": str(folder / "out/plog")},
                          "doctor", "--root", str(tree), folder=folder)

    def nothing_written(folder: Path) -> str | None:
        made = [p.name for p in (folder / "ran", folder / "out") if p.exists()]
        return f"wrote {made}" if made else None
    return EdgeCase("the doctor on a hostile tree", name, prepare, frozenset({0, 2}), one_line=False,
                    check=nothing_written, bound_s=30)


def _driver(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def spoil(tree: Path) -> None:
        make(tree / "usr/local/Ascend/driver/version.info")
    return spoil


def _binary(tree: Path) -> None:
    tool = tree / "usr/local/bin/npu-smi"
    tool.parent.mkdir(parents=True)
    tool.write_text(f"#!/bin/sh\ntouch '{tree.parent / 'ran'}'\n")
    tool.chmod(0o755)


def _mounts_link(tree: Path) -> None:
    (tree / "proc/self/mounts").unlink()
    (tree / "proc/self/mounts").symlink_to("/dev/zero")


def doctor_cases(servers: Servers) -> list[EdgeCase]:
    return [
        doctor_case("a FIFO for version.info", _driver(os.mkfifo)),
        doctor_case("a folder for version.info", _driver(lambda p: p.mkdir())),
        doctor_case("version.info not UTF-8", _driver(lambda p: p.write_bytes(b"Version=\xff\xfe25.5\n"))),
        doctor_case("version.info a link to /dev/zero", _driver(lambda p: p.symlink_to("/dev/zero"))),
        doctor_case("/proc/self/mounts a link to /dev/zero", _mounts_link),
        doctor_case("an npu-smi in the tree", _binary),
        doctor_case("the settings' folders outside the tree", lambda tree: None),
    ]


# --- 6. watch and smoke ----------------------------------------------------------------------------

def watch_case(name: str, phase: dict) -> EdgeCase:
    def prepare(folder: Path) -> list[str]:
        state = folder / "state"
        state.mkdir()
        (state / "phase.json").write_text(json.dumps({"since": time.time(), "pid": os.getpid(), **phase}))
        return entrypoint({"PLATFORM": "cpu"}, "watch", "--plain", "--timeout", "3", folder=folder)

    return EdgeCase("watch and smoke", f"watch: {name}", prepare, frozenset({1}), one_line=False,
                    check=None, bound_s=20)


def smoke_case(name: str, url: Callable[[], str]) -> EdgeCase:
    return EdgeCase("watch and smoke", f"smoke: {name}",
                    lambda folder: entrypoint({"PLATFORM": "cpu", "REQUEST_TIMEOUT": "2"}, "smoke", "--url", url(),
                                              folder=folder), frozenset({1}), bound_s=15)


def watch_smoke_cases(servers: Servers) -> list[EdgeCase]:
    return [
        watch_case("a phase that sets the terminal title and fakes [ready]",
                   {"phase": "vllm\x1b]0;owned\x07\r[ready] http://127.0.0.1:1\n"}),
        watch_case("a download folder of /", {"phase": "download", "folder": "/", "total_bytes": 10}),
        *(EdgeCase("watch and smoke", f"watch --{option} {value}", lambda folder, o=option, v=value: entrypoint(
            {"PLATFORM": "cpu"}, "watch", f"--{o}", v, folder=folder), frozenset({2}))
          for option, value in (("timeout", "nan"), ("timeout", "-1"), ("timeout", "inf"), ("pid", "0"),
                                ("pid", "-5"), ("timeout", "ten"))),
        smoke_case("a server that trickles its answer", lambda: servers.trickle),
        smoke_case("a server whose answer never ends", lambda: servers.huge),
    ]


# --- 7. the helper scripts --------------------------------------------------------------------------

def script(name: str, *args: str, **env: str) -> Callable[[Path], list[str]]:
    return lambda folder: ["/usr/bin/env", "-i", f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}",
                           f"HOME={folder}", *(f"{k}={v}" for k, v in env.items()), sys.executable,
                           str(ROOT / "scripts" / name), *[a.replace("{folder}", str(folder)) for a in args]]


def script_cases(servers: Servers) -> list[EdgeCase]:
    kind = "helper scripts"
    table = {
        "base-image.py IMAGE_VERSION with a trailing space": script("base-image.py", IMAGE_VERSION="v0.18.0rc1 "),
        "base-image.py IMAGE_VERSION=v9": script("base-image.py", IMAGE_VERSION="v9"),
        "base-image.py NPU_HARDWARE=a9": script("base-image.py", NPU_HARDWARE="a9"),
        "npu-devices.py NPU_DEVICES=0,0": script("npu-devices.py", "{folder}/cards.yaml", NPU_DEVICES="0,0"),
        "npu-devices.py NPU_DEVICE=x": script("npu-devices.py", "{folder}/cards.yaml", NPU_DEVICE="x"),
        "rollout.py --drain inf": script("rollout.py", "--drain", "inf"),
        "rollout.py --drain nan": script("rollout.py", "--drain", "nan"),
        "rollout.py --ready-timeout 1e9": script("rollout.py", "--ready-timeout", "1e9"),
        "warm-plans.py without arguments": script("warm-plans.py"),
        "warm-plans.py WARM_ISAS=sse9": script("warm-plans.py", "{folder}/o", "{folder}", "sse9", "x", "render"),
    }
    # A trailing space in IMAGE_VERSION is trimmed, as the entrypoint trims it: 0 or 2, one line either way.
    return [EdgeCase(kind, name, prepare, frozenset({0, 2} if "trailing space" in name else {2}))
            for name, prepare in table.items()]


# --- 8. Make variables ------------------------------------------------------------------------------

def make_cases(servers: Servers) -> list[EdgeCase]:
    values = {"PORT": ["8000; touch {folder}/F", "8000 9000", "`touch {folder}/F`", "0"],
              "REPLICAS": ["0", "2;touch {folder}/F"], "PROJECT": ["a b", "../x"], "RENDER_FORMAT": ["yaml"],
              "WARM_ISAS": ["native;touch {folder}/F"], "PLATFORM": ["gpu", "npu`touch {folder}/F`"],
              "ENGINE": ["podman"]}

    def case(name: str, value: str) -> EdgeCase:
        def prepare(folder: Path) -> list[str]:
            engine = [] if name == "ENGINE" else ["ENGINE=native"]
            given = value.replace("{folder}", str(folder))
            return ["make", "-s", "-C", str(ROOT), "render", *engine, f"{name}={given}"]

        return EdgeCase("Make variables", f"{name}={value}", prepare, frozenset({2}),
                        check=lambda folder: "ran the injected command" if (folder / "F").exists() else None)
    return [case(name, value) for name, options in values.items() for value in options]


# --- 9. the native pid file -------------------------------------------------------------------------

def pid_case(name: str, content: Callable[[int], str]) -> EdgeCase:
    bystanders: dict[Path, subprocess.Popen] = {}

    def prepare(folder: Path) -> list[str]:
        (folder / "scripts").mkdir()
        for script_name in ("native.sh", "paths.sh"):
            shutil.copy(ROOT / "scripts" / script_name, folder / "scripts")
        (folder / ".run").mkdir()
        bystander = subprocess.Popen(["sleep", "60"])
        bystanders[folder] = bystander
        (folder / ".run/serve.pid").write_text(content(bystander.pid))
        return ["bash", str(folder / "scripts/native.sh"), "down"]

    def bystander_alive(folder: Path) -> str | None:
        bystander = bystanders.pop(folder)
        alive = bystander.poll() is None
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()
        return None if alive else "signalled a process make up did not start"
    return EdgeCase("the native pid file", name, prepare, frozenset({0}), check=bystander_alive)


def pid_cases(servers: Servers) -> list[EdgeCase]:
    return [pid_case("a bare pid of another process", lambda pid: f"{pid}\n"),
            pid_case("another process's pid with a wrong start time", lambda pid: f"{pid} 1\n"),
            pid_case("a pid file holding shell text", lambda pid: f"{pid}; kill -9 {pid}\n"),
            pid_case("an empty pid file", lambda pid: "")]


# --- 10. TERMINATION_LOG ----------------------------------------------------------------------------

def termination_case(name: str, make: Callable[[Path], Path]) -> EdgeCase:
    """A start that fails in seconds (the hub refuses on loopback's discard port) with the
    termination log at a file that is not one."""
    def prepare(folder: Path) -> list[str]:
        return entrypoint({"PLATFORM": "cpu", "TERMINATION_LOG": str(make(folder)), "METRICS_PORT": "0",
                           "MODELSCOPE_ENDPOINT": "http://127.0.0.1:9", "MODELSCOPE_DOWNLOAD_INTRA_CLOUD": "false",
                           "DOWNLOAD_RETRIES": "1"}, "serve", folder=folder)

    def untouched(folder: Path) -> str | None:
        return None if (folder / "notes.txt").read_text() == "one\ntwo\n" else "overwrote a file that is not a log"
    return EdgeCase("TERMINATION_LOG", name, prepare, frozenset({1}), one_line=False, check=untouched, bound_s=60)


def _notes(folder: Path) -> Path:
    (folder / "notes.txt").write_text("one\ntwo\n")
    return folder / "notes.txt"


def _link_to_notes(folder: Path) -> Path:
    _notes(folder)
    (folder / "link").symlink_to(folder / "notes.txt")
    return folder / "link"


def termination_cases(servers: Servers) -> list[EdgeCase]:
    return [*refused("TERMINATION_LOG", {"a relative path": {"TERMINATION_LOG": "x.log"}}),
            termination_case("a file of two lines", _notes), termination_case("a link to a file", _link_to_notes)]


CLASSES: list[Callable[[Servers], list[EdgeCase]]] = [
    secrets_cases, managed_flag_cases, number_cases, shape_cases, doctor_cases, watch_smoke_cases, script_cases,
    make_cases, pid_cases, termination_cases]


def all_cases(servers: Servers) -> list[EdgeCase]:
    return [case for source in CLASSES for case in source(servers)]


# --- the servers the cases point at -----------------------------------------------------------------

class _Hostile(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        kind = self.server.kind  # type: ignore[attr-defined]
        if kind == "echo":
            self._echo()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            for _ in range(600):
                self.wfile.write(b" " if kind == "trickle" else b" " * 2**20)
                self.wfile.flush()
                if kind == "trickle":
                    time.sleep(0.1)
        except OSError:
            pass

    do_POST = do_GET

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 65536)).decode(errors="replace")
        text = json.dumps({"Code": 403, "Message": f"denied: {dict(self.headers)} {body}"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def servers() -> Iterator[Servers]:
    with ExitStack() as stack:
        urls = []
        for kind in ("echo", "trickle", "huge"):
            httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
            httpd.kind = kind  # type: ignore[attr-defined]
            Thread(target=httpd.serve_forever, daemon=True).start()
            stack.callback(httpd.server_close)
            stack.callback(httpd.shutdown)
            urls.append(f"http://127.0.0.1:{httpd.server_port}")
        yield Servers(*urls)


TERMINAL_CONTROLS = ("\x1b", "\x07", "\r")  # what redraws a terminal or fakes a line


class Outcome(NamedTuple):
    handled: bool
    traceback: bool
    hang: bool
    secret_printed: bool
    broke: str | None  # a post-condition that failed: a write where none belongs, a signalled bystander
    run: hostile_state.Run


def judge(case: EdgeCase, run: hostile_state.Run, folder: Path) -> Outcome:
    output = run.stdout + run.stderr
    traceback, hang = "Traceback" in output, run.code is None
    secret = any(secret in output for secret in case.secrets)
    broke = case.check(folder) if case.check else None
    if broke is None and any(control in output for control in TERMINAL_CONTROLS):
        broke = "printed a terminal control character"
    lines_ok = len(run.lines) == 1 if case.one_line else bool(run.lines)
    handled = run.code in case.exits and lines_ok and not (traceback or hang or secret or broke)
    return Outcome(handled, traceback, hang, secret, broke, run)


def run_case(case: EdgeCase, folder: Path) -> Outcome:
    argv = case.prepare(folder)
    argv[0] = shutil.which(argv[0]) or argv[0]  # the launcher execs without a PATH search
    run = hostile_state.run_command(argv, guard=(case.bound_s or 30) * 4)
    return judge(case, run, folder)
