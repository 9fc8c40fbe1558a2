"""The canary's exact split (weights.py): shares per pod, the fallback when a version has no ready pod,
and what nginx's smooth weighted round robin makes of the weights (simulated here; the real nginx is
in tests/integration/test_canary_weights.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, render_nginx_conf
from scaledapi_operator.weights import Split, effective_split, shares, weighted


def pods(prefix: str, count: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.{prefix}.{index + 1}", 5252) for index in range(count)]


def smooth_weighted_round_robin(servers: list[Endpoint], picks: int) -> list[str]:
    """nginx's choice (ngx_http_upstream_get_peer) among servers that all answer: backups never."""
    primary = [s for s in servers if not s.backup]
    current = {s.ip: 0 for s in primary}
    total = sum(s.weight for s in primary)
    chosen: list[str] = []
    for _ in range(picks):
        for server in primary:
            current[server.ip] += server.weight
        best = max(primary, key=lambda s: current[s.ip])  # the first of equals, as nginx
        current[best.ip] -= total
        chosen.append(best.ip)
    return chosen


@pytest.mark.parametrize(
    ("percent", "count", "expected"),
    [
        (100, 3, [34, 33, 33]),
        (0, 2, [0, 0]),
        (10, 3, [4, 3, 3]),
        (2, 3, [1, 1, 0]),
        (50, 1, [50]),
        (7, 0, []),
    ],
)
def test_shares_give_the_remainder_to_the_first_pods(percent: int, count: int, expected: list[int]) -> None:
    assert shares(percent, count) == expected
    assert sum(expected) == (percent if count else 0)


def test_a_version_without_a_ready_pod_gets_no_share() -> None:
    assert effective_split(20, 3, 1) == Split(80, 20)
    assert effective_split(20, 3, 0) == Split(100, 0)  # the canary is not up yet
    assert effective_split(20, 0, 1) == Split(0, 100)  # the stable version has no ready pod
    assert effective_split(100, 0, 2) == Split(0, 100)  # Argo Rollouts answers 503 here
    assert effective_split(0, 0, 2) == Split(0, 100)  # serving beats an empty upstream
    with pytest.raises(ValueError, match=r"0\.\.100"):
        effective_split(101, 1, 1)


@pytest.mark.parametrize("weight", [0, 10, 33, 50, 100])
@pytest.mark.parametrize(("stable_pods", "canary_pods"), [(3, 1), (3, 2), (1, 3), (4, 4)])
def test_every_100_requests_in_a_row_give_each_pod_exactly_its_weight(
    weight: int, stable_pods: int, canary_pods: int
) -> None:
    stable, canary = pods("1", stable_pods), pods("2", canary_pods)
    servers, split = weighted(stable, canary, weight)
    assert split == Split(100 - weight, weight)
    assert sum(s.weight for s in servers if not s.backup) == 100
    sequence = smooth_weighted_round_robin(servers, 300)
    expected = {s.ip: s.weight for s in servers if not s.backup}
    # Any 100 in a row, not only those from the start: the order repeats every 100 picks.
    for start in range(0, 201, 7):
        assert Counter(sequence[start : start + 100]) == expected
    canary_ips = {e.ip for e in canary}
    for start in (0, 100, 200):
        assert sum(ip in canary_ips for ip in sequence[start : start + 100]) == weight


def test_pods_with_no_share_are_backups() -> None:
    servers, _ = weighted(pods("1", 2), pods("2", 3), 2)
    canary = [s for s in servers if s.ip.startswith("10.0.2.")]
    assert [(s.weight, s.backup) for s in canary] == [(1, False), (1, False), (1, True)]
    servers, _ = weighted(pods("1", 2), pods("2", 1), 0)
    assert [(s.ip, s.weight, s.backup) for s in servers] == [
        ("10.0.1.1", 50, False),
        ("10.0.1.2", 50, False),
        ("10.0.2.1", 1, True),
    ]


def test_weighted_servers_are_rendered_with_weight_and_backup() -> None:
    servers, _ = weighted(pods("1", 2), pods("2", 1), 0)
    text = render_nginx_conf(NginxSettings(), servers)
    assert "server 10.0.1.1:5252 weight=50 max_fails=1 fail_timeout=5s;" in text
    assert "server 10.0.2.1:5252 max_fails=1 fail_timeout=5s backup;" in text
    # Without a canary every server keeps nginx's default weight, and the text is as before.
    plain = render_nginx_conf(NginxSettings(), pods("1", 2))
    assert "weight=" not in plain and "backup" not in plain


def test_a_weight_out_of_nginx_bounds_is_refused() -> None:
    with pytest.raises(ValueError, match="endpoint weight"):
        render_nginx_conf(NginxSettings(), [Endpoint("10.0.0.1", 80, weight=0)])
