"""Scenario 1: the sample answers round robin on localhost:8080, as the compose original did."""

from __future__ import annotations

from collections import Counter

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi


def test_round_robin(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2))
    two = {p.name for p in sapi.wait_serving(namespace, name, 2)}
    sapi.wait_config_applied(namespace, name)

    # curl localhost:8080/api/hello, again and again: the answering pod alternates.
    sequence = traffic.instances(traffic.DEFAULT_PORT, 20)
    assert set(sequence) == two, f"expected answers from {two}, got {sequence}"
    repeats = [i for i in range(1, len(sequence)) if sequence[i] == sequence[i - 1]]
    assert not repeats, f"not alternating: the same pod answered twice in a row at {repeats}: {sequence}"
    figures.record("1 round robin", "2 replicas, 20 requests", dict(Counter(sequence)))

    sapi.scale(namespace, name, 3)
    three = {p.name for p in sapi.wait_serving(namespace, name, 3)}
    sapi.wait_config_applied(namespace, name)
    assert two < three, f"scaling up replaced pods: {two} -> {three}"

    counts = Counter(traffic.instances(traffic.DEFAULT_PORT, 300))
    figures.record("1 round robin", "3 replicas, 300 requests", dict(counts))
    assert set(counts) == three, f"answers came from {set(counts)}, pods are {three}"
    assert all(count == 100 for count in counts.values()), f"not 100 each: {dict(counts)}"
