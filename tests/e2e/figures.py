"""Figures the scenarios measure; conftest writes them to reports/e2e-report.json and prints them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

FIGURES: dict[str, dict[str, Any]] = {}


def record(scenario: str, key: str, value: Any) -> None:
    FIGURES.setdefault(scenario, {})[key] = _with_text_keys(value)


def _with_text_keys(value: Any) -> Any:
    """The report is JSON with sorted keys: a count keyed by ``None`` (a request no copy answered) or by
    a number would make ``json.dumps(sort_keys=True)`` fail, and lose every figure of the run."""
    if isinstance(value, dict):
        return {NO_ANSWER if k is None else str(k): _with_text_keys(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_with_text_keys(v) for v in value]
    return value


NO_ANSWER = "(no answer)"


def stats(values: Sequence[float], with_values: bool = True) -> dict[str, Any]:
    """Median and worst (max) of durations in seconds, rounded to ms, with the raw values unless
    ``with_values`` is False (hundreds of them would drown the report)."""
    if not values:
        return {"count": 0}
    summary = {
        "count": len(values),
        "median_s": round(statistics.median(values), 3),
        "worst_s": round(max(values), 3),
        "best_s": round(min(values), 3),
    }
    return {**summary, "values_s": [round(v, 3) for v in values]} if with_values else summary
