"""The canary's split through the real nginx over real gunicorn backends: for each weight, 100*m
requests in a row give every stable and canary copy exactly its share (weights.py states the rule),
and so does every window of 100 requests in that sequence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from scaledapi_operator.weights import weighted
from tests.integration.itest_support import Backend, Nginx, hello

M = 2


@pytest.mark.parametrize("weight", [0, 10, 33, 50, 100])
def test_each_copy_gets_exactly_its_weight_per_100_requests(
    weight: int, start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    stable = start_backends("stable-0", "stable-1", "stable-2")
    canary = start_backends("canary-0", "canary-1")
    servers, split = weighted([b.endpoint for b in stable], [b.endpoint for b in canary], weight)
    by_port = {b.port: b.name for b in [*stable, *canary]}
    expected = {by_port[s.port]: s.weight for s in servers if not s.backup}
    nginx = start_nginx(servers, worker_processes=2)  # the shared zone keeps one turn for both workers

    sequence = [hello(nginx.url) for _ in range(100 * M)]

    counts = Counter(sequence)
    print(f"weight {weight}: split {split}, {100 * M} requests: {dict(sorted(counts.items()))}")
    assert counts == {name: share * M for name, share in expected.items()}
    assert sum(counts[b.name] for b in canary) == weight * M
    for start in range(0, 100 * (M - 1) + 1, 5):
        assert Counter(sequence[start : start + 100]) == expected, f"window at {start}"
