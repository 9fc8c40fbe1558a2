"""What every section reports, and the table and JSON made of it. Pure: no cluster, no clock.

A section returns :class:`Figure` rows (the table) and raw samples (the JSON). A figure compares the
ScaledApi side with the plain-Kubernetes side (``ratio`` = ScaledApi / plain), or stands alone; its goal
applies to the ratio or to the ScaledApi value, as the issue states it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RATIO = "ratio"
VALUE = "scaledapi"


def median(values: Iterable[float]) -> float | None:
    data = list(values)
    return statistics.median(data) if data else None


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0..100), interpolated between the closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    rank = (len(data) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Count, median, p95, p99, min and max of raw values, with the values themselves."""
    if not values:
        return {"count": 0, "values": []}

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, digits)

    return {
        "count": len(values),
        "median": r(median(values)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "min": r(min(values)),
        "max": r(max(values)),
        "values": [round(v, digits) for v in values],
    }


@dataclass(frozen=True)
class Goal:
    """``value OP target``, e.g. ratio >= 0.95 or p95 <= 0.25 s."""

    op: Literal["<=", ">="]
    target: float

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.target if self.op == "<=" else value >= self.target

    def text(self, unit: str = "") -> str:
        return f"{self.op} {self.target:g}{' ' + unit if unit else ''}"


@dataclass(frozen=True)
class Figure:
    """One row of the table."""

    section: str
    name: str
    scaledapi: float | None
    plain: float | None = None
    unit: str = "s"
    goal: Goal | None = None
    goal_on: str = VALUE  # RATIO or VALUE (the ScaledApi side)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.scaledapi, self.plain)

    @property
    def judged(self) -> float | None:
        return self.ratio if self.goal_on == RATIO else self.scaledapi

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.judged)

    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        if self.goal_on == RATIO:
            return "ratio " + self.goal.text()
        return self.goal.text(self.unit)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        out["goal"] = None if self.goal is None else self.goal_text()
        out["met"] = self.met
        return out


@dataclass
class SectionResult:
    """A section's outcome: its figures, its raw samples, how long it took and why it failed, if so."""

    name: str
    figures: list[Figure] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    started: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started": self.started,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "notes": self.notes,
            "figures": [f.as_dict() for f in self.figures],
            "samples": self.samples,
        }


def _number(value: float) -> str:
    """Up to 3 significant digits after the point for small numbers, whole numbers for large ones."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return _number(value) + (f" {unit}" if unit else "")


def _met_text(met: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[met]


HEADER = ("figure", "ScaledApi", "plain", "ratio", "goal", "met?")


def table_rows(results: Iterable[SectionResult]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for result in results:
        for f in result.figures:
            rows.append(
                (
                    f"{result.name}: {f.name}",
                    fmt(f.scaledapi, f.unit),
                    fmt(f.plain, f.unit),
                    fmt(f.ratio),
                    f.goal_text(),
                    _met_text(f.met),
                )
            )
        if result.error is not None:
            rows.append((f"{result.name}: FAILED ({_one_line(result.error)})", "-", "-", "-", "-", "NO"))
    return rows


def _one_line(text: str, limit: int = 90) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def render_table(results: Sequence[SectionResult]) -> str:
    """A Markdown table (readable as plain text too), then one line per section with its duration."""
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |"

    out = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows[1:]]
    out.append("")
    out += [
        f"{r.name}: {r.seconds:.0f} s" + (" (failed)" if r.error else "") + "".join(f"; {n}" for n in r.notes)
        for r in results
    ]
    return "\n".join(out)


def report(
    results: Sequence[SectionResult], environment: Mapping[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON document of reports/bench.json."""
    return {
        "environment": dict(environment),
        "options": dict(options),
        "table": [dict(zip(HEADER, row, strict=True)) for row in table_rows(results)],
        "sections": {r.name: r.as_dict() for r in results},
    }


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False, default=str) + "\n"
