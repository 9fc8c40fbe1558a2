"""Figures the scenarios measure; conftest writes them to reports/e2e-report.json and prints them."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

FIGURES: dict[str, dict[str, Any]] = {}


def record(scenario: str, key: str, value: Any) -> None:
    FIGURES.setdefault(scenario, {})[key] = value


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Median and worst (max) of durations in seconds, rounded to ms, with the raw values."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "median_s": round(statistics.median(values), 3),
        "worst_s": round(max(values), 3),
        "best_s": round(min(values), 3),
        "values_s": [round(v, 3) for v in values],
    }
