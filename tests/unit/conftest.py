"""Each unit test starts with an operator that has seen nothing, as a freshly started process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scaledapi_operator.seen import SEEN


@pytest.fixture(autouse=True)
def nothing_seen_yet() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()
