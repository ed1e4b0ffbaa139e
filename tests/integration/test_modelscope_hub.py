"""The loopback hub against the real modelscope client, each run in a subprocess behind the netguard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import modelscope  # noqa: F401  (the subprocesses use this interpreter's client; a broken install fails here)
import pytest

from testbed.modelscope_hub import LoopbackHub, RequestInfo
from testbed.servers import NETGUARD

pytestmark = pytest.mark.integration

MODEL = "google/gemma-3-270m-it"
WEIGHTS = "sub/weights.bin"
LISTING = f"/api/v1/models/{MODEL}/repo/files?Revision=master&Recursive=True"


def run_python(code: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with the netguard loaded and a private HOME."""
    # Proxies would route loopback traffic elsewhere; inherited hub settings would leak in.
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith(("MODELSCOPE_", "PYTHON"))
    }
    base.update(PYTHONPATH=str(NETGUARD), HOME=str(home), MODELSCOPE_CACHE=str(home / "cache"), **env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_client(hub: LoopbackHub, home: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run client *code* pointed at *hub*; the intra-cloud probe is disabled as in production."""
    return run_python(code, home, MODELSCOPE_ENDPOINT=hub.endpoint, MODELSCOPE_DOWNLOAD_INTRA_CLOUD="false")


def snapshot(hub: LoopbackHub, home: Path, model: str = MODEL, **kwargs: str) -> subprocess.CompletedProcess[str]:
    """Call modelscope.snapshot_download(model, **kwargs) and print the returned path."""
    code = f"from modelscope import snapshot_download\nprint(snapshot_download({model!r}, **{kwargs!r}))"
    return run_client(hub, home, code)


def output_path(proc: subprocess.CompletedProcess[str]) -> Path:
    """Check the run succeeded without tripping the netguard and return its last printed line as a path."""
    assert proc.returncode == 0, proc.stderr
    assert "netguard" not in proc.stderr, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def served(hub: LoopbackHub) -> dict[str, bytes]:
    """Contents the hub serves for MODEL, keyed by repo path."""
    return {path: f.source.read_bytes() for path, f in hub.files[MODEL].items()}


def tree(root: Path) -> dict[str, bytes]:
    """Every file under *root*, keyed by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def of_kind(hub: LoopbackHub, kind: str) -> list[RequestInfo]:
    """Requests of one kind, oldest first."""
    return [info for info in hub.history if info.kind == kind]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET *url* in-process; HTTP errors come back as (status, headers, body) too."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A tiny model folder: JSON files, a multi-chunk binary in a subfolder, an empty file, and a .git to hide."""
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/master\n")
    (root / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    (root / "tokenizer.json").write_text(json.dumps({"version": "1.0", "vocab": list(range(100))}))
    (root / "empty.txt").write_bytes(b"")
    (root / WEIGHTS).write_bytes(os.urandom(3 * 2**20 + 17))  # several 1 MiB chunks plus an odd tail
    return root


@pytest.fixture
def hub(model_dir: Path) -> Iterator[LoopbackHub]:
    """A running hub serving model_dir as MODEL at master and v1."""
    with LoopbackHub({MODEL: model_dir}, revisions=("master", "v1")) as running:
        yield running


def test_snapshot_download_is_byte_identical_and_counted(hub: LoopbackHub, tmp_path: Path) -> None:
    """One listing plus one request per file; a second run is served from the verified cache."""
    expected = served(hub)
    assert ".git/HEAD" not in expected and "empty.txt" in expected

    out = output_path(snapshot(hub, tmp_path / "home", cache_dir=str(tmp_path / "cache")))

    assert tree(out) == expected
    assert hub.requests[0] == ("GET", LISTING)
    assert hub.count("listing") == 1
    assert hub.count("file") == len(expected)
    assert hub.count() == len(expected) + 1  # no info, revisions, probe or unknown requests
    assert {info.file_path for info in of_kind(hub, "file")} == set(expected)

    hub.reset()
    assert output_path(snapshot(hub, tmp_path / "home", cache_dir=str(tmp_path / "cache"))) == out
    assert (hub.count("listing"), hub.count("file")) == (1, 0)


def test_revision_into_local_dir(hub: LoopbackHub, tmp_path: Path) -> None:
    """An explicit revision is sent on every request and the files land in local_dir."""
    local = tmp_path / "local"
    out = output_path(snapshot(hub, tmp_path / "home", revision="v1", local_dir=str(local)))

    assert out == local
    assert tree(local) == served(hub)
    assert {info.revision for info in hub.history} == {"v1"}


@pytest.mark.parametrize(("model", "revision"), [("google/no-such-model", "master"), (MODEL, "v9")])
def test_unknown_model_or_revision_fails(hub: LoopbackHub, tmp_path: Path, model: str, revision: str) -> None:
    """The client surfaces the hub's 404 as requests.HTTPError and exits non-zero."""
    proc = snapshot(hub, tmp_path / "home", model=model, revision=revision)

    assert proc.returncode != 0
    assert "HTTPError" in proc.stderr and "404" in proc.stderr
    assert [(info.kind, info.status) for info in hub.history] == [("listing", 404)]


def test_get_model_and_get_model_files(hub: LoopbackHub, tmp_path: Path) -> None:
    """HubApi.get_model reads /openapi/v1 model info; get_model_files reads the listing."""
    code = f"""
        import json
        from modelscope import HubApi
        api = HubApi()
        info = api.get_model({MODEL!r}, revision="master")
        files = api.get_model_files({MODEL!r}, revision="master")
        print(json.dumps({{"owner": info["Owner"], "name": info["Name"], "paths": [f["Path"] for f in files]}}))
    """
    proc = run_client(hub, tmp_path / "home", code)
    output_path(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    assert (result["owner"], result["name"]) == tuple(MODEL.split("/"))
    assert set(result["paths"]) == set(served(hub)) | {"sub"}  # directories are listed as tree entries
    assert hub.requests == [("GET", f"/openapi/v1/models/{MODEL}"), ("GET", LISTING)]


def test_model_file_download_asks_revisions_first(hub: LoopbackHub, tmp_path: Path) -> None:
    """Without a revision, model_file_download resolves one via /revisions, then fetches without a listing."""
    code = f"""
        from modelscope.hub.file_download import model_file_download
        print(model_file_download({MODEL!r}, {WEIGHTS!r}, cache_dir={str(tmp_path / "cache")!r}))
    """
    out = output_path(run_client(hub, tmp_path / "home", code))

    assert out.read_bytes() == served(hub)[WEIGHTS]
    assert [info.kind for info in hub.history] == ["revisions", "file"]


def test_range_request_gets_206(hub: LoopbackHub) -> None:
    """Single ranges get 206 with Content-Range, out-of-file ranges 416, no Range the whole file."""
    body = served(hub)[WEIGHTS]
    size = len(body)
    url = hub.file_url(MODEL, WEIGHTS)

    status, headers, data = fetch(url, {"Range": "bytes=10-19"})
    assert (status, headers["Content-Range"], data) == (206, f"bytes 10-19/{size}", body[10:20])
    status, headers, data = fetch(url, {"Range": "bytes=-5"})
    assert (status, headers["Content-Range"], data) == (206, f"bytes {size - 5}-{size - 1}/{size}", body[-5:])
    status, headers, _ = fetch(url, {"Range": f"bytes={size}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{size}")
    status, headers, data = fetch(url)
    assert (status, headers["Accept-Ranges"], data) == (200, "bytes", body)
    assert [info.status for info in of_kind(hub, "file")] == [206, 206, 416, 200]


def test_client_resumes_partial_file_with_range(hub: LoopbackHub, tmp_path: Path) -> None:
    """The real client resumes a partial download with Range and accepts the 206."""
    local = tmp_path / "local"
    partial = local / f"{WEIGHTS}.incomplete"  # modelscope-hub's partial-file name for WEIGHTS
    partial.parent.mkdir(parents=True)
    partial.write_bytes(served(hub)[WEIGHTS][:1000])

    output_path(snapshot(hub, tmp_path / "home", local_dir=str(local)))

    assert tree(local) == served(hub)
    (resumed,) = [info for info in of_kind(hub, "file") if info.file_path == WEIGHTS]
    assert (resumed.headers.get("Range"), resumed.status) == ("bytes=1000-", 206)


def test_fault_hook_status_is_retried(hub: LoopbackHub, tmp_path: Path) -> None:
    """A 503 injected on the first weights request is retried by the client and the download completes."""
    seen: list[str] = []

    def fail_first_weights(info: RequestInfo) -> int | None:
        if info.file_path != WEIGHTS:
            return None
        seen.append(info.target)
        return 503 if len(seen) == 1 else None

    hub.fault = fail_first_weights
    out = output_path(snapshot(hub, tmp_path / "home", cache_dir=str(tmp_path / "cache")))

    assert tree(out) == served(hub)
    assert [info.status for info in of_kind(hub, "file") if info.file_path == WEIGHTS] == [503, 200]


def test_unknown_route_is_json_404(hub: LoopbackHub) -> None:
    """Routes the hub does not implement answer 404 with the hub's JSON error envelope."""
    status, headers, data = fetch(f"{hub.endpoint}/api/v1/datasets/x/y/repo/tree")

    assert (status, headers["Content-Type"]) == (404, "application/json")
    assert json.loads(data)["Code"] == 404
    assert hub.history[-1].kind == "unknown"


def test_netguard_refuses_non_loopback(tmp_path: Path) -> None:
    """With the netguard loaded, DNS and connects to other hosts fail naming the host; loopback works."""
    code = """
        import json, socket
        def attempt(call):
            try:
                call()
                return "allowed"
            except OSError as err:
                return str(err)
        def raw_connect():
            with socket.socket() as sock:
                sock.settimeout(1)
                sock.connect(("10.1.2.3", 80))
        with socket.create_server(("127.0.0.1", 0)) as server:
            socket.create_connection(server.getsockname(), timeout=1).close()
            socket.create_connection(("localhost", server.getsockname()[1]), timeout=1).close()
        print(json.dumps({
            "dns": attempt(lambda: socket.getaddrinfo("example.com", 443)),
            "create": attempt(lambda: socket.create_connection(("example.com", 443), timeout=1)),
            "connect": attempt(raw_connect),
        }))
    """
    proc = run_python(code, tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)

    assert "netguard" in result["dns"] and "example.com" in result["dns"]
    assert "netguard" in result["create"] and "example.com" in result["create"]
    assert "netguard" in result["connect"] and "10.1.2.3" in result["connect"]
