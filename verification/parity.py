"""Numeric parity: the guide's error metrics between a served tensor and its float32 reference."""

from __future__ import annotations

from typing import Any

import numpy as np

THRESHOLD = 0.01  # the guide's 1 %: relative_error at or below it passes
METRICS = ("max_abs_error", "mean_abs_error", "relative_error", "cosine_similarity")


def compare(served: Any, reference: Any, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Errors of `served` against `reference`, both flattened to float64.

    relative_error = ||served - reference||_2 / ||reference||_2 (a fraction; the report shows %),
    cosine_similarity = <served, reference> / (||served|| ||reference||).
    """
    a = np.asarray(served, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"cannot compare shapes {a.shape} and {b.shape}")
    diff = a - b
    norm_b = float(np.linalg.norm(b))
    norms = float(np.linalg.norm(a)) * norm_b
    relative = float(np.linalg.norm(diff)) / norm_b if norm_b else float(np.linalg.norm(diff))
    return {"max_abs_error": float(np.max(np.abs(diff))), "mean_abs_error": float(np.mean(np.abs(diff))),
            "relative_error": relative, "cosine_similarity": float(a @ b) / norms if norms else 0.0,
            "threshold": threshold, "values": int(a.size), "passed": relative <= threshold}


def markdown_table(columns: dict[str, dict[str, Any] | None]) -> str:
    """The guide's table shape: one column per compared quantity (None = not measured)."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def cell(key: str, column: dict[str, Any] | None) -> str:
        if column is None:
            return "not measured"
        value = column[key]
        if key == "relative_error" or key == "threshold":
            return f"{value * 100:.4f}%" if key == "relative_error" else f"{value * 100:.1f}%"
        if key == "passed":
            return "PASS" if value else "FAIL"
        return f"{value:.6f}" if isinstance(value, float) else str(value)

    for key in (*METRICS, "threshold", "values", "passed"):
        label = {"passed": "result", "values": "values compared"}.get(key, key)
        lines.append(f"| {label} | " + " | ".join(cell(key, columns[n]) for n in names) + " |")
    return "\n".join(lines)
