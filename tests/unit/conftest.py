"""Each unit test starts with an operator that has seen and cached nothing, as a new process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scaledapi_operator.cache import CHILDREN
from scaledapi_operator.seen import SEEN


@pytest.fixture(autouse=True)
def nothing_seen_yet() -> Iterator[None]:
    SEEN.clear()
    CHILDREN.clear()
    yield
    SEEN.clear()
    CHILDREN.clear()
