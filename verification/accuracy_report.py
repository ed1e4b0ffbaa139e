"""accuracy.md: the evaluation's results as the guide's section 6 shows them, plus what was compared."""

from __future__ import annotations

from typing import Any

from verification import parity
from verification.runs import environment_markdown
from verification.tasks import CATEGORIES


def _cell(text: str, limit: int = 80) -> str:
    """Text safe inside a Markdown table cell."""
    flat = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "⏎")
    return f"`{flat[:limit]}{'…' if len(flat) > limit else ''}`" if flat else "(empty)"


def _pass(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def determinism_section(det: dict[str, Any]) -> list[str]:
    lines = [f"## 1. Determinism: {_pass(det['passed'])}", "",
             f"Each prompt sent {det['rounds']} times to `{det['endpoint']}` at temperature 0, "
             f"{det['max_tokens']} tokens; outputs compared byte for byte.", "",
             "| # | prompt | identical | output (round 1) |", "|---|---|---|---|"]
    for index, item in enumerate(det["items"], 1):
        lines.append(f"| {index} | {_cell(item['prompt'], 50)} | {'yes' if item['identical'] else 'NO'} | "
                     f"{_cell(item['outputs'][0])} |")
    differing = [item for item in det["items"] if not item["identical"]]
    for item in differing:
        lines += ["", f"Outputs of {_cell(item['prompt'], 50)} by round:"]
        lines += [f"- round {n}: {_cell(out, 200)}" for n, out in enumerate(item["outputs"], 1)]
    return lines


def tasks_section(result: dict[str, Any]) -> list[str]:
    total = result["scores"]["all"]
    lines = [f"## 2. Task set: {total['correct']}/{total['total']} correct", "",
             f"Method: {result['method']}. Scores are reported, not judged: a 270M model answers few "
             "of these, which the guide expects (内容质量受参数量限制).", "",
             "| category | correct |", "|---|---|"]
    scores = result["scores"]
    lines += [f"| {name} | {scores[name]['correct']}/{scores[name]['total']} |"
              for name in (*CATEGORIES, "all") if name in scores]
    lines += ["", "| id | category | prompt | expected (regex) | answer | correct |", "|---|---|---|---|---|---|"]
    lines += [f"| {i['id']} | {i['category']} | {_cell(i['prompt'], 60)} | {_cell(i['expect'], 40)} | "
              f"{_cell(i['answer'])} | {'yes' if i['correct'] else 'no'} |" for i in result["items"]]
    return lines


def parity_section(par: dict[str, Any] | None) -> list[str]:
    if par is None:
        return ["## 3. Numeric parity: not measured (--skip-parity or no weights given)"]
    lines = ["## 3. Numeric parity against a float32 CPU reference", "",
             f"Reference: {par['reference']}, on the same weights and the same {par['tokens']} token ids "
             f"({len(par['texts'])} texts, BOS included; the ids are sent, not the text).", "",
             "- **Logits**: the server's `prompt_logprobs` (`/v1/completions`, "
             f"prompt_logprobs={par['prompt_logprobs_per_position']}: at each position after the first, the "
             f"prompt's own token and the {par['prompt_logprobs_per_position']} most likely ones) compared with "
             "`log_softmax` of the transformers logits for the same token ids at the same positions. "
             "So the logits column compares log-probabilities (logits up to a per-position constant).",
             "- **Hidden states**: vLLM's pooling runner in-process (`runner='pooling'`, "
             "`pooling_task='token_embed'`, `use_activation=False`, i.e. no normalisation): the final "
             "decoder output after the last RMSNorm, every position × hidden size, against transformers' "
             "`model.model(...).last_hidden_state` (also after the final norm).",
             "- relative_error = ‖served − reference‖₂ / ‖reference‖₂ over all compared values; "
             "cosine_similarity over the same flattened vectors; PASS when relative_error ≤ "
             f"{par['threshold'] * 100:g}%.", ""]
    for dtype, columns in par["by_dtype"].items():
        lines += [f"### {dtype}: served logits and pooled hidden states", "",
                  parity.markdown_table({"Logits": columns["logits"], "Hidden States": columns["hidden_states"]})]
        lines += ["", *_sources(columns)]
        if columns["logits"] is None:
            lines += ["", f"Logits not measured in {dtype}: no server running {dtype} was given "
                          "(`--server {dtype}=URL`)."]
        lines.append("")
    return lines


def _sources(columns: dict[str, Any]) -> list[str]:
    """Where each column's numbers came from and how many positions they cover."""
    lines = []
    if columns["logits"]:
        lines.append(f"- Logits: server {columns['logits']['source']}, {columns['logits']['positions']} positions")
    if columns["hidden_states"]:
        hidden = columns["hidden_states"]
        lines.append(f"- Hidden States: `{hidden['source']}`, {hidden['positions']} positions")
    return lines


def markdown(env: dict[str, Any], data: dict[str, Any]) -> str:
    """The whole report."""
    lines = ["# Accuracy evaluation", "", environment_markdown(env),
             f"- server: {data['url']} (served name `{data['served_model_name']}`, dtype {env['dtype']})", "",
             f"Overall: **{_pass(data['passed'])}** (determinism and the float32 parity checks; task "
             "scores and lower-precision parity are reported, not judged)", ""]
    lines += [*determinism_section(data["determinism"]), ""]
    lines += [*tasks_section(data["tasks"]), ""]
    lines += parity_section(data["parity"])
    return "\n".join(lines)
