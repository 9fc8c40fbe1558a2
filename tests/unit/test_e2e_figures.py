"""The e2e report's figures survive counts keyed by None (no answer) or by numbers."""

from __future__ import annotations

import json

from tests.e2e import figures


def test_a_count_keyed_by_none_is_written_under_a_text_key() -> None:
    figures.FIGURES.clear()
    figures.record("s", "per pod", {"pod-a": 3, None: 1, 7: {None: [{"x": None}]}})
    text = json.dumps(figures.FIGURES, sort_keys=True)
    assert json.loads(text) == {
        "s": {"per pod": {"(no answer)": 1, "7": {"(no answer)": [{"x": None}]}, "pod-a": 3}}
    }
    figures.FIGURES.clear()
