"""Model weights on local disk: from MODEL_SOURCE, once, complete and verified.

The hub download is the real `modelscope` client's engine, `modelscope_hub` (it
retries requests, resumes partial files and checks hashes); this module adds what
a shared cache volume needs around it:

- one quick listing request first, so a wrong MODEL_ID/MODEL_REVISION fails in seconds;
  the client downloads exactly that checked listing (no second listing a hub could
  change into unsafe names);
- a file lock, so two processes on one cache download once;
- a free-space check first, and a full disk reported as such, never retried;
- bounded retries of the whole download with exponential backoff;
- a completeness marker written only after every listed file is present with its
  size and sha256, so an interrupted download never looks complete (the client keeps
  partial files as ``*.incomplete`` beside their targets and resumes them);
- no network at all when the marker is there.

Every failure is one line naming MODEL_ID, MODELSCOPE_ENDPOINT or MODEL_CACHE_DIR.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity
from filelock import FileLock, Timeout

from entrypoint import metrics
from entrypoint.errors import SettingsError, UserError
from entrypoint.scrub import scrub, scrub_url
from entrypoint.settings import Settings
from entrypoint.value_grammar import inside

log = logging.getLogger("entrypoint.weights")
MARKER = ".bundle-complete.json"
PARTIAL_SUFFIX = ".incomplete"  # the client's name for a file still being fetched
LISTING_ATTEMPTS = 3
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)  # retrying cannot help


@dataclass(frozen=True)
class RemoteFile:
    """One file of the hub's listing."""

    path: str
    size: int
    sha256: str | None


class HubUnreachable(UserError):
    """The hub did not answer at all (DNS, refused, timed out)."""


def cache_folder(settings: Settings) -> Path:
    """Where MODEL_ID at MODEL_REVISION lives inside MODEL_CACHE_DIR, checked to lie inside before anything is
    created there (a folder symlinked out of the cache since the settings were read counts too)."""
    folder = settings.hub_cache_folder
    if not inside(folder, settings.model_cache_dir):
        raise SettingsError([f"MODEL_REVISION={settings.model_revision!r}: its cache folder {folder} lies outside "
                             "MODEL_CACHE_DIR; allowed: a branch, tag or commit name"])
    return folder


def local_model_path(settings: Settings) -> Path:
    """The folder vLLM will be given (whether or not it is there yet)."""
    if settings.model_source != "modelscope":
        return Path(settings.model_source)
    return cache_folder(settings)


def is_complete(folder: Path) -> bool:
    """Marker present and every file it lists present with its size (cheap: no hashing)."""
    try:
        files = json.loads((folder / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    return all((folder / path).is_file() and (folder / path).stat().st_size == size
               for path, size in ((f["path"], f["size"]) for f in files))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_relative(path: str) -> bool:
    """A listed path that stays inside the model folder."""
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def verify(folder: Path, files: list[RemoteFile]) -> list[str]:
    """Problems of the downloaded folder against the listing, one line each."""
    problems = []
    for remote in files:
        local = folder / remote.path
        if not local.is_file():
            problems.append(f"{remote.path}: missing")
        elif local.stat().st_size != remote.size:
            problems.append(f"{remote.path}: {local.stat().st_size} bytes, expected {remote.size}")
        elif remote.sha256 and sha256_of(local) != remote.sha256:
            problems.append(f"{remote.path}: sha256 mismatch")
    return problems


def write_marker(folder: Path, settings: Settings, files: list[RemoteFile]) -> None:
    """Declare the folder complete; written last and atomically."""
    data: dict[str, Any] = {"model_id": settings.model_id, "revision": settings.model_revision,
                            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]}
    tmp = folder / f"{MARKER}.tmp"
    try:
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(folder / MARKER)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(settings, exc, 0) from None


def describe(settings: Settings) -> str:
    """MODEL_ID, revision, endpoint and cache, for error lines."""
    return (f"MODEL_ID={settings.model_id} MODEL_REVISION={settings.model_revision} "
            f"MODELSCOPE_ENDPOINT={scrub_url(settings.modelscope_endpoint) or '(client default)'} "
            f"MODEL_CACHE_DIR={settings.model_cache_dir}")


def headline(exc: BaseException) -> str:
    """The first line of an error, URL credentials masked: the client's errors append request
    details on further lines and quote the URLs they tried."""
    text = str(exc).strip()
    return scrub(text.splitlines()[0]) if text else type(exc).__name__


def disk_error_of(exc: BaseException) -> OSError | None:
    """The full-disk (or read-only, or forbidden) OSError behind `exc`, also inside the client's errors."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_ERRORS:
            return current
        pending.extend(getattr(current, "failed_files", {}).values())  # FileDownloadError's per-file causes
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def disk_error(settings: Settings, exc: OSError, need: int) -> UserError:
    """One line for a disk that cannot take the weights."""
    where = f"MODEL_CACHE_DIR={settings.model_cache_dir}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        needed = f"need {mb(need)} MB more, " if need else ""
        return UserError(f"no space left on device in {where} while downloading {settings.model_id}: "
                         f"{needed}{mb(free_bytes(settings.model_cache_dir))} MB free; "
                         "free space or mount a bigger volume there")
    return UserError(f"cannot write the weights of {settings.model_id} in {where}: {exc.strerror or exc}")


def mb(size: int) -> int:
    """Bytes as whole megabytes, rounded up (a need of 1 byte is 1 MB, not 0)."""
    return -(-size // 1_000_000)


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding `path` (0 if it cannot be read)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def missing_bytes(folder: Path, files: list[RemoteFile]) -> int:
    """Bytes still to fetch: files not yet there at their size, less what their partial files hold."""
    need = 0
    for remote in files:
        local = folder / remote.path
        if local.is_file() and local.stat().st_size == remote.size:
            continue
        partial = local.with_name(local.name + PARTIAL_SUFFIX)
        need += remote.size - (partial.stat().st_size if partial.is_file() else 0)
    return max(need, 0)


def check_free_space(settings: Settings, folder: Path, files: list[RemoteFile]) -> None:
    """Fail before the first byte when the weights cannot fit."""
    need = missing_bytes(folder, files)
    if need > free_bytes(folder):
        raise disk_error(settings, OSError(errno.ENOSPC, "No space left on device"), need)


def remove_partials(folder: Path) -> None:
    """Drop partial files the client left behind (say, of a file the hub no longer lists)."""
    for partial in folder.rglob(f"*{PARTIAL_SUFFIX}"):
        partial.unlink(missing_ok=True)


def _hub_token(settings: Settings) -> str | None:
    """MODELSCOPE_TOKEN for the client (None: the client's own MODELSCOPE_API_TOKEN or login, if any)."""
    return settings.modelscope_token.get_secret_value() if settings.modelscope_token else None


def _hub_api(settings: Settings) -> Any:
    from modelscope_hub.api import HubApi  # heavy: only when the hub is needed

    return HubApi(endpoint=settings.modelscope_endpoint or None, token=_hub_token(settings))


def _is_unreachable(exc: BaseException) -> bool:
    import requests
    from modelscope_hub.errors import NetworkError

    return isinstance(exc, (NetworkError, requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError))


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) or getattr(exc, "status_code", None)


def _is_missing(exc: BaseException) -> bool:
    from modelscope_hub.errors import NotExistError

    return isinstance(exc, NotExistError) or _status(exc) == 404


def _is_refused(exc: BaseException) -> bool:
    """The hub wants a (different) token: a private model, final until the user changes settings."""
    from modelscope_hub.errors import AuthenticationError, PermissionDeniedError

    return isinstance(exc, (AuthenticationError, PermissionDeniedError)) or _status(exc) in (401, 403)


def _listing_worth_retrying(exc: BaseException) -> bool:
    return not (_is_missing(exc) or _is_unreachable(exc) or _is_refused(exc))


def list_remote(settings: Settings) -> list[RemoteFile]:
    """The hub's file listing for MODEL_ID at MODEL_REVISION (the quick existence check)."""
    where = f"MODEL_ID={settings.model_id} MODEL_REVISION={settings.model_revision}"
    # The client already retries connection errors (about 8 s); a missing model is final.
    retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(LISTING_ATTEMPTS),
                                 wait=tenacity.wait_exponential(multiplier=1, max=8), reraise=True,
                                 retry=tenacity.retry_if_exception(_listing_worth_retrying))
    try:
        infos = retrying(lambda: _hub_api(settings).list_repo_files(
            settings.model_id, "model", revision=settings.model_revision, recursive=True))
    except Exception as exc:
        if _is_missing(exc):
            raise SettingsError([f"{where}: not found on the hub; allowed: an existing model id and revision"]) \
                from None
        if _is_refused(exc):
            given = "the token given was refused" if settings.modelscope_token else "no token given"
            raise SettingsError([f"{where}: the hub refused access ({given}); allowed: for a private model, "
                                 "MODELSCOPE_TOKEN or MODELSCOPE_TOKEN_FILE with a token that may read it"]) from None
        endpoint = f"MODELSCOPE_ENDPOINT={scrub_url(settings.modelscope_endpoint) or '(client default)'}"
        if _is_unreachable(exc):
            raise HubUnreachable(f"model hub unreachable at {endpoint} for {where}: {headline(exc)}") from None
        raise UserError(f"listing {where} at {endpoint} failed: {headline(exc)}") from None
    files = [RemoteFile(i.path, int(i.size or 0), i.sha256) for i in infos if getattr(i, "type", "blob") != "tree"]
    unsafe = [f.path for f in files if not safe_relative(f.path)]
    if unsafe:
        hub = scrub_url(settings.modelscope_endpoint) or "the hub"
        raise UserError(f"refusing {where} from {hub}: it lists file names outside the model folder {unsafe[:5]}")
    return files


class IncompleteDownload(Exception):
    """The client returned, but the folder does not match the listing."""



def _download_once(settings: Settings, folder: Path, files: list[RemoteFile]) -> None:
    # Exactly the listing checked by list_remote: the client lists nothing itself.
    listing = [{"Path": f.path, "Name": Path(f.path).name, "Type": "blob", "Size": f.size, "Sha256": f.sha256 or ""}
               for f in files]
    _hub_api(settings).download_repo(settings.model_id, "model", revision=settings.model_revision,
                                     local_dir=folder, file_list=listing)
    problems = verify(folder, files)
    if problems:
        raise IncompleteDownload("; ".join(problems[:5]))


def _worth_retrying(exc: BaseException) -> bool:
    return not isinstance(exc, (UserError, KeyboardInterrupt)) and disk_error_of(exc) is None


def _reason(exc: BaseException) -> str:
    """One line: the first failed file's own error rather than the client's '1 of 3 files failed'."""
    failed = getattr(exc, "failed_files", None)
    if failed:
        path, cause = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} more files)" if len(failed) > 1 else ""
        return f"{path}: {headline(cause)}{more}"
    return headline(exc)


def _before_retry(state: tenacity.RetryCallState) -> None:
    metrics.download_retried()
    log.warning("download attempt %d failed (%s); retrying", state.attempt_number, _reason(state.outcome.exception()))


def download(settings: Settings, files: list[RemoteFile], folder: Path) -> None:
    """Fetch every file into `folder`, retrying the whole snapshot with backoff; a full disk is final."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.download_retries),
        wait=tenacity.wait_exponential(multiplier=2, max=60), reraise=True,
        retry=tenacity.retry_if_exception(_worth_retrying),
        before_sleep=_before_retry)
    try:
        retrying(_download_once, settings, folder, files)
    except UserError:
        raise
    except Exception as exc:
        metrics.download_failed()
        full = disk_error_of(exc)
        if full is not None:
            raise disk_error(settings, full, missing_bytes(folder, files)) from None
        raise UserError(f"download failed after {settings.download_retries} attempts (DOWNLOAD_RETRIES) for "
                        f"{describe(settings)}: {_reason(exc)}") from None


# Told the folder and the listing's total bytes when a download begins (the start's progress).
OnDownload = Callable[[Path, int], None]


def fetch_from_hub(settings: Settings, on_download: OnDownload | None = None) -> Path:
    """The complete cache folder for MODEL_ID, downloading under a lock if needed."""
    folder = cache_folder(settings)
    if is_complete(folder):
        log.info("weights complete in %s; no hub request", folder)
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _cache_lock(folder):
            if is_complete(folder):  # another process finished while we waited
                log.info("weights completed by another process in %s", folder)
                return folder
            _fetch(settings, folder, on_download)
    except OSError as exc:  # the folder, its lock or a partial-file cleanup: the disk's fault, not the hub's
        raise disk_error(settings, exc, 0) from None
    log.info("weights complete and verified in %s", folder)
    return folder


def _fetch(settings: Settings, folder: Path, on_download: OnDownload | None = None) -> None:
    """List, check the room, download, verify, then mark complete; the caller holds the lock."""
    files = list_remote(settings)
    if on_download is not None:
        on_download(folder, sum(f.size for f in files))
    log.info("downloading %s@%s: %d files, %.1f MB into %s", settings.model_id, settings.model_revision,
             len(files), sum(f.size for f in files) / 1e6, folder)
    check_free_space(settings, folder, files)
    to_fetch, began = missing_bytes(folder, files), time.monotonic()
    download(settings, files, folder)
    metrics.download_finished(to_fetch, time.monotonic() - began)
    remove_partials(folder)
    write_marker(folder, settings, files)


@contextlib.contextmanager
def _cache_lock(folder: Path) -> Iterator[None]:
    """Hold the lock of one model folder; say so when another process has it (the kernel frees it if that dies)."""
    lock = FileLock(str(folder.parent / f".{folder.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process is downloading into %s; waiting for it", folder)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@dataclass(frozen=True)
class Weights:
    """The folder to serve, and whether it is the fallback rather than MODEL_ID."""

    path: Path
    fallback: bool = False


def ensure_weights(settings: Settings, on_download: OnDownload | None = None) -> Weights:
    """The folder to serve: MODEL_SOURCE's path, the hub cache, or (loudly) the fallback."""
    if settings.model_source != "modelscope":
        return Weights(Path(settings.model_source))
    try:
        return Weights(fetch_from_hub(settings, on_download))
    except HubUnreachable as exc:
        if settings.fallback_model_dir is None:
            raise
        banner = "!" * 78
        log.warning("%s\n%s\nSERVING FALLBACK WEIGHTS %s INSTEAD OF %s\n%s", banner, exc,
                    settings.fallback_model_dir, settings.model_id, banner)
        return Weights(settings.fallback_model_dir, fallback=True)
