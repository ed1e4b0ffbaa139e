"""Model weights on local disk: from MODEL_SOURCE, once, complete and verified.

The hub download is the real `modelscope` client (it retries requests, resumes
partial files and checks hashes); this module adds what a shared cache volume
needs around it:

- one quick listing request first, so a wrong MODEL_ID/MODEL_REVISION fails in seconds;
- a file lock, so two processes on one cache download once;
- bounded retries of the whole download with exponential backoff;
- a completeness marker written only after every listed file is present with its
  size and sha256, so an interrupted download never looks complete;
- no network at all when the marker is there.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity
from filelock import FileLock

from entrypoint.errors import SettingsError, UserError
from entrypoint.settings import Settings

log = logging.getLogger("entrypoint.weights")
MARKER = ".bundle-complete.json"
LISTING_ATTEMPTS = 3


@dataclass(frozen=True)
class RemoteFile:
    """One file of the hub's listing."""

    path: str
    size: int
    sha256: str | None


class HubUnreachable(UserError):
    """The hub did not answer at all (DNS, refused, timed out)."""


def cache_folder(settings: Settings) -> Path:
    """Where MODEL_ID at MODEL_REVISION lives inside MODEL_CACHE_DIR."""
    owner, name = settings.model_id.split("/", 1)
    return settings.model_cache_dir / "models" / owner / name / settings.model_revision


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
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(folder / MARKER)


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
        if _is_unreachable(exc):
            raise HubUnreachable(f"model hub unreachable for {where}: {exc}") from None
        raise UserError(f"listing {where} failed: {exc}") from None
    files = [RemoteFile(i.path, int(i.size or 0), i.sha256) for i in infos if getattr(i, "type", "blob") != "tree"]
    unsafe = [f.path for f in files if not safe_relative(f.path)]
    if unsafe:
        raise UserError(f"refusing {where}: the hub lists unsafe file names {unsafe}")
    return files


def _download_once(settings: Settings, folder: Path, files: list[RemoteFile]) -> None:
    from modelscope import snapshot_download

    snapshot_download(settings.model_id, revision=settings.model_revision, local_dir=str(folder),
                      endpoint=settings.modelscope_endpoint or None, token=_hub_token(settings))
    problems = verify(folder, files)
    if problems:
        raise UserError(f"download of {settings.model_id} incomplete: {'; '.join(problems[:5])}")


def download(settings: Settings, files: list[RemoteFile], folder: Path) -> None:
    """Fetch every file into `folder`, retrying the whole snapshot with backoff."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.download_retries),
        wait=tenacity.wait_exponential(multiplier=2, max=60), reraise=True,
        retry=tenacity.retry_if_exception(lambda e: not isinstance(e, (SettingsError, KeyboardInterrupt))),
        before_sleep=lambda state: log.warning("download attempt %d failed (%s); retrying",
                                               state.attempt_number, state.outcome.exception()))
    try:
        retrying(_download_once, settings, folder, files)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"download of {settings.model_id} failed after {settings.download_retries} "
                        f"attempts: {exc}") from None


def fetch_from_hub(settings: Settings) -> Path:
    """The complete cache folder for MODEL_ID, downloading under a lock if needed."""
    folder = cache_folder(settings)
    if is_complete(folder):
        log.info("weights complete in %s; no hub request", folder)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        if is_complete(folder):  # another process finished while we waited
            log.info("weights completed by another process in %s", folder)
            return folder
        files = list_remote(settings)
        total = sum(f.size for f in files)
        log.info("downloading %s@%s: %d files, %.1f MB into %s", settings.model_id, settings.model_revision,
                 len(files), total / 1e6, folder)
        download(settings, files, folder)
        write_marker(folder, settings, files)
    log.info("weights complete and verified in %s", folder)
    return folder


@dataclass(frozen=True)
class Weights:
    """The folder to serve, and whether it is the fallback rather than MODEL_ID."""

    path: Path
    fallback: bool = False


def ensure_weights(settings: Settings) -> Weights:
    """The folder to serve: MODEL_SOURCE's path, the hub cache, or (loudly) the fallback."""
    if settings.model_source != "modelscope":
        return Weights(Path(settings.model_source))
    try:
        return Weights(fetch_from_hub(settings))
    except HubUnreachable as exc:
        if settings.fallback_model_dir is None:
            raise
        banner = "!" * 78
        log.warning("%s\n%s\nSERVING FALLBACK WEIGHTS %s INSTEAD OF %s\n%s", banner, exc,
                    settings.fallback_model_dir, settings.model_id, banner)
        return Weights(settings.fallback_model_dir, fallback=True)
