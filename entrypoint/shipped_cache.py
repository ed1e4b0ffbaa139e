"""A first start on a fresh volume made warm: the compile cache an image ships, copied to the volume.

An image built with `make image-warm` carries, under SHIPPED_COMPILE_CACHE, one compile cache per
CPU instruction set it was warmed for (a folder named by `entrypoint.inductor_isa`'s key). Before
vLLM starts, `seed` keeps these guarantees, in this order:

1. It only fills an empty cache: a volume that already holds Inductor's cache keeps it, untouched.
2. It only copies the cache of the instruction set torch picks here, asked in vLLM's own interpreter
   with vLLM's environment: a kernel compiled for another ISA would compute wrong results.
3. A copy is whole or absent: it is made beside the cache and renamed into place, so a start killed
   halfway leaves a folder the next start removes, never half a cache.
4. It never stops a start: whatever fails, vLLM starts and compiles as it would have (a cold start),
   and the log says why in one line.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from entrypoint.inductor_isa import isa_key

log = logging.getLogger("entrypoint.shipped_cache")
INDUCTOR_SUBDIR = "torchinductor"  # TORCHINDUCTOR_CACHE_DIR under the compile cache (templates/serve/base.env.j2)
PARTIAL_PREFIX = ".seeding-"


def shipped_keys(shipped: Path) -> list[str]:
    """The ISA keys the image ships a cache for."""
    if not shipped.is_dir():
        return []
    return sorted(p.name for p in shipped.iterdir() if p.is_dir() and (p / INDUCTOR_SUBDIR).is_dir())


def _is_empty(folder: Path) -> bool:
    return not folder.is_dir() or not any(folder.iterdir())


def _folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _copy_whole(source: Path, cache: Path) -> None:
    """Each top-level entry of `source` the cache lacks, copied beside it, then renamed into place."""
    for leftover in cache.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    for entry in sorted(source.iterdir()):
        target = cache / entry.name
        if target.exists() and not _is_empty(target):
            continue
        partial = cache / f"{PARTIAL_PREFIX}{entry.name}"
        if entry.is_dir():
            shutil.copytree(entry, partial, symlinks=True)
        else:
            shutil.copy2(entry, partial)
        if target.is_dir():
            target.rmdir()  # empty: checked above
        partial.rename(target)


def seed(cache: Path, shipped: Path, python: str, env: Mapping[str, str]) -> str:
    """Fill an empty compile cache from the image's cache for this ISA; returns the line it logged."""
    keys = shipped_keys(shipped)
    if not keys:
        return ""  # an image without shipped caches: nothing to say
    if not _is_empty(cache / INDUCTOR_SUBDIR):
        return _say(f"compile cache: {cache} already holds Inductor's cache; the image's ({', '.join(keys)}) "
                    "is not copied")
    began = time.monotonic()
    try:
        key = isa_key(python, env)
        if key not in keys:
            return _say(f"compile cache: the image ships caches for {', '.join(keys)}, none for this CPU ({key}): "
                        "vLLM compiles the model (a cold start)")
        cache.mkdir(parents=True, exist_ok=True)
        _copy_whole(shipped / key, cache)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return _say(f"compile cache: the image's cache could not be copied ({_one_line(exc)}); "
                    "vLLM compiles the model (a cold start)")
    files, size = _folder_size(shipped / key)
    return _say(f"compile cache: copied the image's {key} cache ({files} files, {size / 2**20:.1f} MiB) to {cache} "
                f"in {time.monotonic() - began:.1f} s: a warm first start")


def _one_line(exc: BaseException) -> str:
    """The failure in a line: copytree's collected errors as their count and first reason."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        return f"{len(exc.args[0])} file(s) failed, the first: {exc.args[0][0][-1]}"
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text or 'no detail'}"


def _say(line: str) -> str:
    log.info("%s", line)
    return line
