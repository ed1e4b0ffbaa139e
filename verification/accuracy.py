"""The guide's accuracy evaluation (section 6): determinism, a small task set, numeric parity.

- Determinism: the task prompts at temperature 0, `rounds` times through /v1/completions;
  the outputs must be identical byte for byte.
- Task set: round 1's answers, first line only, checked against each task's pattern.
- Parity: for each dtype, the server's prompt log-probabilities (the server whose dtype it
  is) and vLLM's pooling runner's final hidden states against a float32 transformers
  reference on the same token ids.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from entrypoint.settings import Settings
from verification import parity, tasks
from verification.client import ApiClient
from verification.parity_sources import PROMPT_LOGPROBS, pooled_hidden, reference, served_logprob_pairs, tokenize

DETERMINISM_MAX_TOKENS = 32
PARITY_TEXTS = (
    "The capital of France is Paris, and the capital of Japan is Tokyo.",
    "Q: What is 7 times 8?\nA: 56",
    "Gemma is a family of lightweight open models built from the same research as Gemini.",
    "问:中国的首都是哪里?\n答:北京",
)
Step = Callable[[str], None]  # reports progress: one finished step with a label


@dataclass
class EvalPlan:
    """What to measure: servers by dtype (the first is the main one), weights, rounds, parity dtypes."""

    servers: dict[str, ApiClient]
    model: Path | None
    rounds: int = 3
    parity_dtypes: list[str] = field(default_factory=lambda: ["float32", "bfloat16"])
    quick: bool = False
    engine_kwargs: dict[str, Any] = field(default_factory=dict)  # over the server's, for the pooling runner

    @property
    def main_client(self) -> ApiClient:
        return next(iter(self.servers.values()))

    def step_count(self) -> int:
        """How many progress steps the whole run has."""
        prompts = len(tasks.select(self.quick))
        parity_steps = 0 if self.model is None else 1 + len(self.servers) + len(self.parity_dtypes)
        return self.rounds * prompts + parity_steps


def determinism(client: ApiClient, prompts: list[str], rounds: int, step: Step) -> dict[str, Any]:
    """Each prompt `rounds` times at temperature 0; identical outputs pass."""
    outputs: list[list[str]] = [[] for _ in prompts]
    for round_no in range(rounds):
        for index, prompt in enumerate(prompts):
            body = client.complete(prompt, temperature=0.0, max_tokens=DETERMINISM_MAX_TOKENS)
            outputs[index].append(body["choices"][0]["text"])
            step(f"determinism round {round_no + 1}/{rounds}")
    items = [{"prompt": prompt, "identical": len({o.encode() for o in outs}) == 1, "outputs": outs}
             for prompt, outs in zip(prompts, outputs, strict=True)]
    return {"rounds": rounds, "temperature": 0.0, "max_tokens": DETERMINISM_MAX_TOKENS,
            "endpoint": "/v1/completions", "passed": all(item["identical"] for item in items), "items": items}


def task_results(selected: list[tasks.Task], answers: list[str]) -> dict[str, Any]:
    """Per item and per category scores of the given answers."""
    items = [{"id": t.id, "category": t.category, "prompt": t.prompt, "expect": t.expect,
              "answer": tasks.first_line(a), "correct": tasks.is_correct(t, a)}
             for t, a in zip(selected, answers, strict=True)]
    return {"method": "completion prompt 'Q: ...\\nA:' (Chinese: '问:...\\n答:'), temperature 0, "
                      f"{DETERMINISM_MAX_TOKENS} tokens; the first line of the answer is searched for the "
                      "expected pattern (case-insensitive)",
            "scores": tasks.score(selected, answers), "items": items}


def _pooled_in_child(settings: Settings, model: Path, dtype: str, token_ids: list[list[int]],
                     engine: dict[str, Any]) -> list[np.ndarray]:
    """The pooling runner in a fresh process, so each dtype's engine is started and freed cleanly."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(pooled_hidden, settings, model, dtype, token_ids, engine).result()


def pooling_source(dtype: str, engine: dict[str, Any]) -> str:
    """How the pooling runner was made, as the report names it."""
    given = "".join(f", {name}={value!r}" for name, value in engine.items())
    return f"vllm.LLM(runner='pooling', dtype='{dtype}'{given})"


def numeric_parity(settings: Settings, plan: EvalPlan, step: Step) -> dict[str, Any]:
    """Logits (as log-probabilities) per server dtype and final hidden states per pooling dtype."""
    assert plan.model is not None
    texts = list(PARITY_TEXTS[:2] if plan.quick else PARITY_TEXTS)
    token_ids = tokenize(plan.model, texts)
    ref = reference(plan.model, token_ids)
    step("float32 transformers reference")
    by_dtype: dict[str, dict[str, Any]] = {d: {"logits": None, "hidden_states": None}
                                           for d in dict.fromkeys([*plan.servers, *plan.parity_dtypes])}
    for dtype, client in plan.servers.items():
        served: list[float] = []
        expected: list[float] = []
        for ids, ref_logprobs in zip(token_ids, ref.logprobs, strict=True):
            pair = served_logprob_pairs(client, ids, ref_logprobs)
            served += pair[0]
            expected += pair[1]
        by_dtype[dtype]["logits"] = {**parity.compare(served, expected), "source": client.base_url,
                                     "positions": sum(len(ids) - 1 for ids in token_ids)}
        step(f"logits from the {dtype} server")
    for dtype in plan.parity_dtypes:
        hidden = _pooled_in_child(settings, plan.model, dtype, token_ids, plan.engine_kwargs)
        by_dtype[dtype]["hidden_states"] = {**parity.compare(np.concatenate(hidden), np.concatenate(ref.hidden)),
                                            "source": pooling_source(dtype, plan.engine_kwargs),
                                            "positions": sum(len(ids) for ids in token_ids)}
        step(f"hidden states from the {dtype} pooling runner")
    return {"reference": "transformers AutoModelForCausalLM, torch float32, CPU", "texts": texts,
            "tokens": sum(len(ids) for ids in token_ids), "prompt_logprobs_per_position": PROMPT_LOGPROBS,
            "threshold": parity.THRESHOLD, "by_dtype": by_dtype}


def run(settings: Settings, plan: EvalPlan, step: Step) -> dict[str, Any]:
    """The whole evaluation as one JSON-ready dict (without the environment block)."""
    selected = tasks.select(plan.quick)
    det = determinism(plan.main_client, [t.prompt for t in selected], plan.rounds, step)
    data: dict[str, Any] = {"served_model_name": plan.main_client.model, "url": plan.main_client.base_url,
                            "determinism": det,
                            "tasks": task_results(selected, [item["outputs"][0] for item in det["items"]])}
    data["parity"] = numeric_parity(settings, plan, step) if plan.model is not None else None
    data["passed"] = verdict(data)
    return data


def verdict(data: dict[str, Any]) -> bool:
    """The run passes when outputs are deterministic and every float32 parity check passes.

    Task scores are reported, not judged (a 270M model answers few), and lower-precision
    dtypes are reported against the same 1 % line without failing the run.
    """
    float32 = (data.get("parity") or {}).get("by_dtype", {}).get("float32", {})
    checks = [column["passed"] for column in float32.values() if column]
    return bool(data["determinism"]["passed"]) and all(checks)
