"""Each e2e scenario's time, from the junit files of `make e2e`'s phases, slowest first.

Usage: python hack/e2e_times.py reports/e2e-junit-*.xml > reports/e2e-times.txt
A scenario is a test module; its time is the sum of its cases' (setup, call and teardown each), so a
module-scoped fixture counts once. Phases run one after the other; within the parallel phase the
scenarios overlap, so the phase's wall time is less than the sum of its scenarios.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def main(paths: list[str]) -> int:
    lines = []
    scenarios: dict[str, float] = defaultdict(float)
    outcomes: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        root = ET.parse(path).getroot()  # noqa: S314 - our own pytest's output
        for suite in root.iter("testsuite"):
            phase = Path(path).stem.removeprefix("e2e-junit-")
            lines.append(
                f"phase {phase}: {float(suite.get('time', 0)):.0f} s wall, "
                f"{suite.get('tests')} tests, {suite.get('failures')} failures, {suite.get('errors')} errors"
            )
            for case in suite.iter("testcase"):
                module = case.get("classname", "?").rsplit(".", 1)[-1]
                scenarios[module] += float(case.get("time", 0))
                failed = case.find("failure") is not None or case.find("error") is not None
                outcomes[module].append("failed" if failed else "ok")
    lines.append("")
    lines.append(f"{'seconds':>8}  scenario")
    for module, seconds in sorted(scenarios.items(), key=lambda kv: -kv[1]):
        bad = outcomes[module].count("failed")
        lines.append(f"{seconds:8.1f}  {module}{f'  ({bad} failed)' if bad else ''}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
