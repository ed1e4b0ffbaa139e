"""Where the parity numbers come from: a float32 transformers reference, the server's prompt
log-probabilities and vLLM's pooling runner (final hidden states), all on the same token ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from entrypoint.settings import Settings
from verification.client import ApiClient

PROMPT_LOGPROBS = 20  # vLLM's default --max-logprobs: the most a server returns per position
POOLING_MEMORY_FRACTION = 0.05  # of NPU/GPU memory for the in-process pooling runner beside the server


@dataclass
class Reference:
    """transformers in float32 on the CPU, per prompt: log_softmax of the logits and the last hidden state."""

    token_ids: list[list[int]]
    logprobs: list[np.ndarray]  # [positions, vocab]
    hidden: list[np.ndarray]  # [positions, hidden size], after the final norm


def tokenize(model: Path, texts: list[str]) -> list[list[int]]:
    """Token ids with BOS, as the server would make them; sent as ids so both sides see the same input."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return [tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]


def reference(model: Path, token_ids: list[list[int]]) -> Reference:
    """The float32 CPU baseline.

    `model.model(...).last_hidden_state` is the decoder output after its final RMSNorm, the
    same tensor vLLM's Gemma3Model returns and its pooling runner hands out (`token_embed`).
    """
    import torch
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    logprobs, hidden = [], []
    with torch.inference_mode():
        for ids in token_ids:
            tensor = torch.tensor([ids])
            hidden.append(lm.model(input_ids=tensor).last_hidden_state[0].numpy())
            logits = lm(input_ids=tensor).logits[0].float()
            logprobs.append(torch.log_softmax(logits, dim=-1).numpy())
    return Reference(token_ids, logprobs, hidden)


def served_logprob_pairs(client: ApiClient, ids: list[int], ref_logprobs: np.ndarray) -> tuple[list[float],
                                                                                                list[float]]:
    """The server's prompt log-probabilities and the reference's at the same (position, token id) pairs.

    Position p of `prompt_logprobs` scores tokens at p given tokens before p; the reference's
    row p-1 is that same distribution. Every token the server lists (the prompt token and
    its top PROMPT_LOGPROBS) is compared.
    """
    body = client.complete(ids, max_tokens=1, prompt_logprobs=PROMPT_LOGPROBS)
    served, ref = [], []
    for position, entries in enumerate(body["choices"][0].get("prompt_logprobs") or []):
        if not entries:  # the first position has no distribution
            continue
        for token_id, entry in entries.items():
            served.append(float(entry["logprob"]))
            ref.append(float(ref_logprobs[position - 1, int(token_id)]))
    return served, ref


def pooled_hidden(settings: Settings, model: Path, dtype: str, token_ids: list[list[int]],
                  engine: dict[str, Any] | None = None) -> list[np.ndarray]:
    """Final hidden states from vLLM's pooling runner in this process, without normalisation;
    `engine`: keyword arguments over the server's (the tool's --engine-args)."""
    from vllm import PoolingParams
    from vllm.config import PoolerConfig

    from verification.inprocess import make_llm

    extra: dict[str, Any] = {"runner": "pooling"}
    # A causal LM converted to a pooling model: vLLM 0.32 offers only "embed" (last token)
    # unless its PoolerConfig asks for every token; 0.18 offers both and has no such field.
    if "task" in PoolerConfig.__dataclass_fields__:
        extra["pooler_config"] = PoolerConfig(task="token_embed")
    if settings.platform != "cpu":  # the running server holds most of the accelerator's memory
        extra["gpu_memory_utilization"] = POOLING_MEMORY_FRACTION
    llm = make_llm(settings, model, dtype, **{**extra, **(engine or {})})
    try:
        prompts: list[Any] = [{"prompt_token_ids": ids} for ids in token_ids]
        outputs = llm.encode(prompts, PoolingParams(use_activation=False), pooling_task="token_embed",
                             use_tqdm=False)
        return [output.outputs.data.float().numpy() for output in outputs]
    finally:
        del llm
