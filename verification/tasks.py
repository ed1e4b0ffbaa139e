"""The built-in task set: the guide's categories (arithmetic, facts, logic, Chinese), each with a checkable answer.

Prompts are completion-style ("Q: ...\\nA:"), so a base model can answer as well as an
instruction-tuned one; the answer is the text up to the first newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = ("arithmetic", "facts", "logic", "chinese")


@dataclass(frozen=True)
class Task:
    """One question, its category and the pattern a correct answer matches."""

    id: str
    category: str
    question: str
    expect: str  # a regular expression, searched case-insensitively in the answer

    @property
    def prompt(self) -> str:
        """The completion prompt."""
        if self.category == "chinese":
            return f"问:{self.question}\n答:"
        return f"Q: {self.question}\nA:"


TASKS: tuple[Task, ...] = (
    Task("add", "arithmetic", "What is 2 + 3?", r"(?<!\d)5(?!\d)|\bfive\b"),
    Task("multiply", "arithmetic", "What is 7 times 8?", r"(?<!\d)56(?!\d)|fifty-six"),
    Task("subtract", "arithmetic", "What is 100 minus 1?", r"(?<!\d)99(?!\d)|ninety-nine"),
    Task("capital-france", "facts", "What is the capital of France?", r"\bparis\b"),
    Task("capital-japan", "facts", "What is the capital of Japan?", r"\btokyo\b"),
    Task("water-formula", "facts", "What is the chemical formula of water?", r"\bh2o\b|h₂o"),
    Task("taller", "logic", "Tom is taller than Ann. Ann is taller than Bob. Who is the shortest?", r"\bbob\b"),
    Task("weekday", "logic", "If today is Monday, what day is tomorrow?", r"\btuesday\b"),
    Task("opposite", "logic", "What is the opposite of hot?", r"\bcold\b"),
    Task("zh-capital", "chinese", "中国的首都是哪里?", r"北京"),
    Task("zh-add", "chinese", "一加一等于几?", r"二|两|(?<!\d)2(?!\d)"),
    Task("zh-color", "chinese", "天空通常是什么颜色?", r"蓝"),
)


def select(quick: bool) -> list[Task]:
    """All tasks, or the first of each category with --quick."""
    if not quick:
        return list(TASKS)
    return [next(t for t in TASKS if t.category == category) for category in CATEGORIES]


def first_line(text: str) -> str:
    """The answer proper: a completion runs on into the next "Q:", so only its first line counts."""
    return text.strip().split("\n", 1)[0].strip()


def is_correct(task: Task, answer: str) -> bool:
    """Does the answer match the task's expected pattern?"""
    return re.search(task.expect, first_line(answer), re.IGNORECASE) is not None


def score(tasks: list[Task], answers: list[str]) -> dict[str, dict[str, int]]:
    """Correct and total per category, plus "all"."""
    table: dict[str, dict[str, int]] = {}
    for task, answer in zip(tasks, answers, strict=True):
        for key in (task.category, "all"):
            row = table.setdefault(key, {"correct": 0, "total": 0})
            row["total"] += 1
            row["correct"] += is_correct(task, answer)
    return table
