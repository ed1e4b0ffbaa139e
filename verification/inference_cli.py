"""`python inference.py`: one prompt or an interactive chat, through the server or in-process vLLM.

Exit status: 0 answered, 1 the server or the weights could not be used, 2 bad options or settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from entrypoint.errors import run_cli
from entrypoint.resolver import load_settings
from entrypoint.settings import Settings
from verification.chat_loop import chat_loop
from verification.client import Answer, Messages, client_from_settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options; argparse exits 2 with one line on a bad one."""
    parser = argparse.ArgumentParser(prog="inference.py", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("api", "offline"), default="api",
                        help="api: the running server (default); offline: load the weights in this process")
    parser.add_argument("--prompt", help="one user message; the answer is printed and the program exits")
    parser.add_argument("--interactive", action="store_true", help="chat until /exit or Ctrl-D")
    parser.add_argument("--system", help="a system message put before the conversation")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    parser.add_argument("--max-tokens", type=_positive, default=256, help="answer length limit (default 256)")
    parser.add_argument("--json", action="store_true", help="print one JSON object: answer, usage, latency")
    api = parser.add_argument_group("api mode")
    api.add_argument("--url", help="server base URL (default: from HOST and PORT)")
    api.add_argument("--model-name", help="served model name (default: SERVED_MODEL_NAME)")
    offline = parser.add_argument_group("offline mode")
    offline.add_argument("--model", type=Path, help="weights folder (required with --mode offline)")
    offline.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"),
                         help="weights dtype (default: DTYPE)")
    args = parser.parse_args(argv)
    if not args.prompt and not args.interactive:
        parser.error("give --prompt TEXT or --interactive")
    if args.prompt and args.interactive:
        parser.error("--prompt and --interactive exclude each other")
    if args.mode == "offline" and not args.model:
        parser.error("--mode offline needs --model PATH (a weights folder)")
    if args.model and not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json there; allowed: a weights folder")
    return args


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: allowed: an integer >= 1")
    return value


def messages_for(prompt: str, system: str | None) -> Messages:
    """The conversation for one prompt."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


class OfflineChat:
    """vLLM's `LLM` in this process, answering chat conversations with the weights' chat template."""

    def __init__(self, settings: Settings, model: Path, dtype: str | None) -> None:
        from verification.inprocess import make_llm

        self.llm = make_llm(settings, model, dtype)

    def chat(self, messages: Messages, temperature: float, max_tokens: int) -> Answer:
        from vllm import SamplingParams

        start = time.monotonic()
        params = SamplingParams(temperature=temperature, max_tokens=max_tokens)
        output = self.llm.chat(messages, params, use_tqdm=False)[0]
        usage = {"prompt_tokens": len(output.prompt_token_ids or []),
                 "completion_tokens": len(output.outputs[0].token_ids)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return Answer(output.outputs[0].text, usage, time.monotonic() - start)

    def stream_chat(self, messages: Messages, temperature: float, max_tokens: int) -> Iterator[str]:
        # The offline engine answers a turn whole; the chat loop shows it at once.
        yield self.chat(messages, temperature, max_tokens).text


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Answer one prompt or run the chat; return the exit status."""
    if args.mode == "api":
        backend = client_from_settings(settings, args.url, args.model_name)
    else:
        backend = OfflineChat(settings, args.model, args.dtype)
    if args.interactive:
        return chat_loop(lambda history: backend.stream_chat(history, args.temperature, args.max_tokens),
                         system=args.system)
    answer = backend.chat(messages_for(args.prompt, args.system), args.temperature, args.max_tokens)
    if args.json:
        print(json.dumps({"mode": args.mode, "answer": answer.text, "usage": answer.usage,
                          "latency_s": round(answer.latency_s, 3)}, ensure_ascii=False))
    else:
        print(answer.text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse, load the settings, run; user errors are one line on stderr."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: run(args, load_settings()))
