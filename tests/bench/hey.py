"""The load generator: Debian's ``hey``, run inside a kind node (hack/bench.sh copies it there).

Its summary is parsed (:func:`parse_summary`, pure): the duration, hey's own Requests/sec, the status
code and error distributions and the latency percentiles. A failure is any answer other than a 200, or
a request without an answer; the figure the bench uses is the rate of 200s (``ok_per_second``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tests.e2e import nodes

BINARY = "hey"
_TOTAL = re.compile(r"^\s*Total:\s+([0-9.]+)\s+secs", re.MULTILINE)
_RPS = re.compile(r"^\s*Requests/sec:\s+([0-9.]+|NaN|\+Inf)", re.MULTILINE)
_LATENCY = re.compile(r"^\s*(\d+)% in ([0-9.]+) secs", re.MULTILINE)
_STATUS_LINE = re.compile(r"^\[(\d+)\]\s+(\d+)\s+responses$")
_ERROR_LINE = re.compile(r"^\[(\d+)\]\s+(.*)$")


@dataclass(frozen=True)
class HeyResult:
    seconds: float
    requests_per_second: float  # hey's figure: every request, failed ones too
    statuses: dict[str, int] = field(default_factory=dict)  # "200" -> count
    errors: dict[str, int] = field(default_factory=dict)  # message -> count (no HTTP answer)
    latency_s: dict[str, float] = field(default_factory=dict)  # "50" -> seconds

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failures(self) -> int:
        return self.requests - self.ok

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "requests": self.requests,
            "ok": self.ok,
            "failures": self.failures,
            "requests_per_second": self.requests_per_second,
            "ok_per_second": round(self.ok_per_second, 1),
            "statuses": self.statuses,
            "errors": self.errors,
            "latency_s": self.latency_s,
        }


def _section_lines(text: str, title: str) -> list[str]:
    """The lines under ``title`` up to the next blank line."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == title:
            block = []
            for entry in lines[i + 1 :]:
                if not entry.strip():
                    break
                block.append(entry.strip())
            return block
    return []


def _statuses(text: str) -> dict[str, int]:
    """``[200]\t3040 responses`` lines -> {"200": 3040}."""
    found: dict[str, int] = {}
    for line in _section_lines(text, "Status code distribution:"):
        match = _STATUS_LINE.match(line)
        if match:
            found[match.group(1)] = found.get(match.group(1), 0) + int(match.group(2))
    return found


def _errors(text: str) -> dict[str, int]:
    """``[10]\tGet "...": dial tcp ...: connection refused`` lines -> {message: 10}."""
    found: dict[str, int] = {}
    for line in _section_lines(text, "Error distribution:"):
        match = _ERROR_LINE.match(line)
        if match:
            found[match.group(2)] = found.get(match.group(2), 0) + int(match.group(1))
    return found


def parse_summary(text: str) -> HeyResult:
    """hey's default (summary) output -> HeyResult. Raises ValueError when it is not a summary."""
    total = _TOTAL.search(text)
    if total is None:
        raise ValueError(f"no 'Total: ... secs' in hey's output: {text[:500]!r}")
    rps_match = _RPS.search(text)
    rps_text = rps_match.group(1) if rps_match else "NaN"
    rps = float(rps_text) if rps_text not in ("NaN", "+Inf") else 0.0
    statuses = _statuses(text)
    errors = _errors(text)
    latency = {p: float(s) for p, s in _LATENCY.findall(text)}
    return HeyResult(float(total.group(1)), rps, statuses, errors, latency)


def run(node: str, url: str, concurrency: int, seconds: float, timeout_s: int = 10) -> HeyResult:
    """``hey -c CONCURRENCY -z SECONDS URL`` in the node's container; the parsed summary."""
    result = nodes.on_node(
        node,
        BINARY,
        "-c",
        str(concurrency),
        "-z",
        f"{seconds:g}s",
        "-t",
        str(timeout_s),
        url,
        timeout=seconds + timeout_s + 60,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"hey in {node} exited {result.returncode}: {result.stderr.strip()[-1000:]} "
            "(hack/bench.sh copies it into the nodes: run the bench with make bench)"
        )
    return parse_summary(result.stdout)
