"""The CPU instruction set torch Inductor compiles for here, as one word: the shipped compile caches' key.

Inductor's kernel cache is only valid for the vector ISA it generated code for: a kernel
written for 16-lane AVX-512 registers is wrong on an AVX2 machine, and its FX graph cache
does not include the ISA in its key. So a compile cache is copied only between machines for
which torch itself picks the same ISA (`pick_vec_isa`, which honours ATEN_CPU_CAPABILITY), with
the same optional extensions it compiles with (AVX-512 BF16, AMX FP16).

Run as a script (`python3 inductor_isa.py` or `python3 -m entrypoint.inductor_isa`) in the
interpreter that runs vLLM: it imports torch, which the supervisor's own process never does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

KEY_TIMEOUT = 120  # torch's import (a few seconds); bounds a hang only


def torch_isa_key() -> str:
    """The key in this interpreter, e.g. `avx2` or `avx512+avx512_vnni+amx_tile+bf16`.

    torch's own tables and CPU checks, as `pick_vec_isa` uses them, minus its test compiles:
    those would write into TORCHINDUCTOR_CACHE_DIR, the very cache about to be filled, and
    take seconds. The image's compiler is the one that built the shipped caches, so its test
    compiles pass wherever the CPU has the instructions.
    """
    import torch
    from torch._inductor import cpu_vec_isa as vec

    have = set(vec.x86_isa_checker())
    candidates = [isa for isa in vec.supported_vec_isa_list if str(isa).split() and set(str(isa).split()) <= have]
    if not candidates:
        return "none"
    isa = vec.get_isa_from_cpu_capability(os.environ.get("ATEN_CPU_CAPABILITY"), candidates, vec.invalid_vec_isa)
    if isinstance(isa, vec.InvalidVecISA):  # ATEN_CPU_CAPABILITY=default: no vector code
        return "none"
    words = str(isa).split()
    # The extensions VecAVX512 and VecAMX add to their flags when the CPU has them.
    if isinstance(isa, vec.VecAVX512) and torch.cpu._is_avx512_bf16_supported():
        words.append("bf16")
    if isinstance(isa, vec.VecAMX) and torch.cpu._is_amx_fp16_supported():
        words.append("amx_fp16")
    return "+".join(words)


def isa_key(python: str, env: Mapping[str, str]) -> str:
    """The key as vLLM's interpreter with vLLM's environment sees it (a subprocess; raises OSError,
    subprocess.SubprocessError or ValueError when it cannot tell)."""
    done = subprocess.run([python, "-m", "entrypoint.inductor_isa"], env=dict(env), capture_output=True,
                          text=True, timeout=KEY_TIMEOUT, check=True)
    key = done.stdout.strip()
    if not key or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789_+" for c in key):
        raise ValueError(f"unexpected ISA key {key!r}")
    return key


if __name__ == "__main__":
    print(torch_isa_key())
    sys.exit(0)
