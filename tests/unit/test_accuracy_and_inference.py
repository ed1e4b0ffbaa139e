"""The pure parts of the accuracy evaluation and the inference client: metrics, scoring, verdict, report, client."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from entrypoint.resolver import load_settings
from testbed.net import reply
from verification import accuracy, accuracy_report, parity, tasks
from verification.accuracy_cli import parse_args
from verification.chat_loop import chat_loop
from verification.client import ApiClient, client_from_settings, sse_data

# --- parity metrics ---------------------------------------------------------------------


def test_identical_tensors_have_no_error():
    values = np.linspace(-3, 3, 50)
    result = parity.compare(values, values)
    assert result["max_abs_error"] == 0 and result["mean_abs_error"] == 0 and result["relative_error"] == 0
    assert result["cosine_similarity"] == pytest.approx(1.0)
    assert result["passed"] and result["values"] == 50


def test_relative_error_is_the_norm_ratio():
    reference = np.array([3.0, 4.0])  # norm 5
    served = np.array([3.0, 4.1])
    result = parity.compare(served, reference)
    assert result["relative_error"] == pytest.approx(0.1 / 5)
    assert result["max_abs_error"] == pytest.approx(0.1)
    assert result["mean_abs_error"] == pytest.approx(0.05)


def test_threshold_is_one_percent():
    reference = np.ones(100)
    assert parity.compare(reference * 1.009, reference)["passed"]
    assert not parity.compare(reference * 1.011, reference)["passed"]


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shapes"):
        parity.compare([1.0, 2.0], [1.0])


@given(arrays(np.float64, 16, elements=st.floats(-100, 100)), st.floats(0.5, 2.0))
def test_scaling_keeps_cosine_one(values, factor):
    if np.linalg.norm(values) < 1e-6:
        return
    result = parity.compare(values * factor, values)
    assert result["cosine_similarity"] == pytest.approx(1.0)
    assert result["relative_error"] == pytest.approx(abs(factor - 1))


def test_markdown_table_has_the_guides_rows():
    column = parity.compare([1.0, 2.0], [1.0, 2.0])
    table = parity.markdown_table({"Logits": column, "Hidden States": None})
    for row in ("max_abs_error", "mean_abs_error", "relative_error", "cosine_similarity", "threshold", "result"):
        assert f"| {row} |" in table
    assert "| relative_error | 0.0000% | not measured |" in table
    assert "| threshold | 1.0% | not measured |" in table
    assert "PASS" in table


# --- task set -----------------------------------------------------------------------------


def test_every_category_has_tasks_and_quick_takes_one_each():
    assert {t.category for t in tasks.TASKS} == set(tasks.CATEGORIES)
    assert [t.category for t in tasks.select(quick=True)] == list(tasks.CATEGORIES)
    assert len({t.id for t in tasks.TASKS}) == len(tasks.TASKS)


@pytest.mark.parametrize(("task_id", "answer", "correct"), [
    ("capital-france", " Paris\nQ: What is", True),
    ("capital-france", " The capital is paris.", True),
    ("capital-france", " Lyon\nParis", False),  # only the first line counts
    ("add", " 5", True),
    ("add", " 15", False),
    ("add", " five", True),
    ("zh-capital", "北京。", True),
    ("zh-capital", "上海", False),
    ("taller", " Bob is the shortest.", True),
])
def test_answers_are_checked_on_their_first_line(task_id, answer, correct):
    task = next(t for t in tasks.TASKS if t.id == task_id)
    assert tasks.is_correct(task, answer) is correct


def test_prompts_are_completion_style():
    assert tasks.TASKS[0].prompt == "Q: What is 2 + 3?\nA:"
    assert next(t for t in tasks.TASKS if t.category == "chinese").prompt.startswith("问:")


def test_scores_count_per_category_and_overall():
    selected = tasks.select(quick=True)
    answers = [" 5", " Lyon", " Bob", " 北京"]
    scores = tasks.score(selected, answers)
    assert scores["all"] == {"correct": 3, "total": 4}
    assert scores["facts"] == {"correct": 0, "total": 1}


# --- verdict and report -------------------------------------------------------------------


def sample_data(det_ok: bool = True, f32_ok: bool = True, bf16_ok: bool = False) -> dict:
    def column(ok: bool) -> dict:
        return {**parity.compare([1.0, 2.0], [1.0, 2.0] if ok else [2.0, 4.0]), "positions": 2, "source": "x"}

    selected = tasks.select(quick=True)
    outputs = ["a", "a", "a"] if det_ok else ["a", "b", "a"]
    det = {"rounds": 3, "temperature": 0.0, "max_tokens": 32, "endpoint": "/v1/completions", "passed": det_ok,
           "items": [{"prompt": t.prompt, "identical": det_ok, "outputs": outputs} for t in selected]}
    return {"url": "http://127.0.0.1:8000", "served_model_name": "m", "determinism": det,
            "tasks": accuracy.task_results(selected, [" 5", " Paris", " no", " 北京"]),
            "parity": {"reference": "ref", "texts": ["t"], "tokens": 3, "prompt_logprobs_per_position": 20,
                       "threshold": 0.01,
                       "by_dtype": {"float32": {"logits": column(f32_ok), "hidden_states": column(True)},
                                    "bfloat16": {"logits": None, "hidden_states": column(bf16_ok)}}}}


@pytest.mark.parametrize(("det_ok", "f32_ok", "bf16_ok", "passed"), [
    (True, True, False, True), (True, True, True, True), (False, True, True, False), (True, False, True, False),
])
def test_verdict_judges_determinism_and_float32_only(det_ok, f32_ok, bf16_ok, passed):
    assert accuracy.verdict(sample_data(det_ok, f32_ok, bf16_ok)) is passed


def test_report_lists_every_section():
    env = {"date": "d", "platform": "cpu", "weights": "/w", "dtype": "float32",
           "versions": {"vllm": "0.32.0"}, "hardware": {"cpu": "c", "cores": 2, "cpu_flags": [], "memory_gib": 8}}
    data = sample_data(det_ok=False)
    data["passed"] = accuracy.verdict(data)
    text = accuracy_report.markdown(env, data)
    assert "## 1. Determinism: FAIL" in text and "- round 2: `b`" in text
    assert "## 2. Task set: 3/4 correct" in text
    assert "### float32: served" in text and "### bfloat16: served" in text
    assert "Logits not measured in bfloat16" in text
    assert "dtype: float32" in text and "`/w`" in text


# --- client and chat loop -----------------------------------------------------------------


def test_sse_stream_yields_payloads_until_done():
    lines = [b'data: {"n": 1}', b"", b": keep-alive", b'data: {"n": 2}', b"data: [DONE]", b'data: {"n": 3}']
    assert [p["n"] for p in sse_data(iter(lines))] == [1, 2]


def test_chat_loop_keeps_history_and_ends_on_exit():
    seen: list[list[dict]] = []

    def reply(history):
        seen.append([dict(m) for m in history])
        yield "hi "
        yield "there"

    lines = iter(["hello", "again", "/exit"])
    out = io.StringIO()
    assert chat_loop(reply, system="be brief", read=lambda _prompt: next(lines), out=out) == 0
    assert "model> hi there" in out.getvalue()
    assert [m["role"] for m in seen[1]] == ["system", "user", "assistant", "user"]
    assert seen[1][2]["content"] == "hi there"


def test_chat_loop_ends_cleanly_at_end_of_input():
    def read(_prompt):
        raise EOFError

    assert chat_loop(lambda history: iter(()), read=read, out=io.StringIO()) == 0


# --- options ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--rounds", "1"], ["--parity-dtypes", "float64"], ["--server", "bf16=x"],
                                  ["--engine-args=--bogus"], ["--engine-args=--max-model-len"],
                                  ["--engine-args=--dtype float16"], ["--engine-args=--port 8001"]])
def test_bad_eval_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "allowed" in capsys.readouterr().err


def test_eval_options_parse():
    args = parse_args(["--parity-dtypes", "float32", "--server", "bfloat16=http://127.0.0.1:9", "--quick"])
    assert args.parity_dtypes == ["float32"] and args.server == {"bfloat16": "http://127.0.0.1:9"} and args.quick
    assert args.engine_args == {}


def test_engine_args_read_through_the_flag_table_and_name_the_pooling_runner():
    engine = parse_args(["--engine-args=--enforce-eager --max-model-len 2048"]).engine_args
    assert engine == {"enforce_eager": True, "max_model_len": 2048}
    assert accuracy.pooling_source("float32", engine) == \
        "vllm.LLM(runner='pooling', dtype='float32', enforce_eager=True, max_model_len=2048)"


# --- client against a loopback stand-in ---------------------------------------------------


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers any POST with one chat completion and remembers the request's headers."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.seen.append(dict(self.headers))
        reply(self, json.dumps({"choices": [{"message": {"content": "ok"}}], "usage": {"total_tokens": 3}}).encode(),
              "application/json")

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_client_comes_from_the_settings():
    settings = load_settings({"PLATFORM": "cpu", "PORT": "8123", "HOST": "0.0.0.0"})
    client = client_from_settings(settings)
    assert client.base_url == "http://127.0.0.1:8123" and client.model == settings.served_model_name
    assert client_from_settings(settings, "http://h:1", "m").base_url == "http://h:1"


@pytest.mark.parametrize(("api_key", "header"), [(None, None), ("s3cret", "Bearer s3cret")])
def test_api_key_is_sent_as_bearer_token(recorder: str, api_key, header):
    answer = ApiClient(recorder, "m", api_key).chat([{"role": "user", "content": "hi"}])
    assert answer.text == "ok" and answer.usage == {"total_tokens": 3}
    assert Recorder.seen[0].get("Authorization") == header
