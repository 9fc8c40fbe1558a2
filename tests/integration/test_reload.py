"""New configs through the reloader's applier: nginx -t, atomic rename, SIGHUP, against the real nginx."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests

from scaledapi_proxy.applier import APPLIED, REJECTED, config_hash
from tests.integration.itest_support import Backend, Nginx, hello, wait_for

CHANGE_DEADLINE_S = 10.0


def serves_exactly(nginx: Nginx, names: set[str]) -> bool:
    """One full turn of fresh-connection requests hits exactly ``names`` (round robin: each once)."""
    try:
        return {hello(nginx.url) for _ in range(len(names))} == names
    except requests.RequestException:
        return False


class Client(threading.Thread):
    """Sends GET /api/hello on fresh connections until stopped; counts answers and failures."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.answers = Counter[str]()
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                resp = requests.get(f"{self.url}/api/hello", timeout=5, headers={"Connection": "close"})
                if resp.status_code == 200:
                    self.answers[resp.json()["instance"]] += 1
                else:
                    self.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)


def test_change_under_load_loses_no_request(
    start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    a, b, c, d = start_backends("rl-a", "rl-b", "rl-c", "rl-d")
    nginx = start_nginx([a.endpoint, b.endpoint, c.endpoint], worker_processes=2)
    client = Client(nginx.url)
    client.start()
    try:
        wait_for(lambda: client.total() >= 50, 10, "traffic before the change")
        result = nginx.apply([b.endpoint, c.endpoint, d.endpoint])  # a removed, d added
        assert result.state == APPLIED, result
        assert result.reloaded
        wait_for(lambda: serves_exactly(nginx, {"rl-b", "rl-c", "rl-d"}), CHANGE_DEADLINE_S, "the new set")
        mark = client.total()
        wait_for(lambda: client.total() >= mark + 50, 10, "traffic after the change")
    finally:
        client.stop.set()
        client.join(10)

    assert client.failures == []
    assert client.answers["rl-d"] > 0
    # After the switch only the new set answers.
    after = Counter(hello(nginx.url) for _ in range(30))
    assert after == {"rl-b": 10, "rl-c": 10, "rl-d": 10}
    assert nginx.conf_path.read_text() == nginx.render([b.endpoint, c.endpoint, d.endpoint])
    print(f"under load: {client.total()} requests, 0 failed, answers {dict(sorted(client.answers.items()))}")


def test_broken_config_is_refused_and_the_old_one_keeps_serving(
    start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    a, b = start_backends("bc-a", "bc-b")
    nginx = start_nginx([a.endpoint, b.endpoint])
    good = nginx.conf_path.read_text()
    broken = nginx.render([a.endpoint]).replace("proxy_pass http://", "proxy_passs http://")

    result = nginx.applier.apply(broken)

    assert result.state == REJECTED
    assert result.hash == config_hash(broken)
    assert not result.reloaded
    assert 'unknown directive "proxy_passs"' in result.message
    assert nginx.conf_path.read_text() == good
    assert not nginx.applier.needs_apply(broken)  # the same bad text is not tried again
    assert Counter(hello(nginx.url) for _ in range(10)) == {"bc-a": 5, "bc-b": 5}
    assert nginx.proc.poll() is None

    # A later good text goes live as usual.
    fixed = nginx.apply([a.endpoint])
    assert fixed.state == APPLIED
    wait_for(lambda: serves_exactly(nginx, {"bc-a"}), CHANGE_DEADLINE_S, "the fixed config")


def test_change_to_zero_endpoints_and_back(
    start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    (a,) = start_backends("zb-a")
    nginx = start_nginx([a.endpoint])

    assert nginx.apply([]).state == APPLIED

    def answers_503() -> bool:
        resp = requests.get(f"{nginx.url}/api/hello", timeout=5, headers={"Connection": "close"})
        return resp.status_code == 503 and resp.json()["reason"] == "no ready backend"

    wait_for(answers_503, CHANGE_DEADLINE_S, "503 with no endpoint")
    assert nginx.apply([a.endpoint]).state == APPLIED
    wait_for(lambda: serves_exactly(nginx, {"zb-a"}), CHANGE_DEADLINE_S, "the backend again")


def test_median_time_until_the_new_set_serves(
    start_backends: Callable[..., list[Backend]],
    start_nginx: Callable[..., Nginx],
    capsys: pytest.CaptureFixture[str],
) -> None:
    backends = start_backends("md-0", "md-1", "md-2", "md-3")
    by_name = {b.name: b for b in backends}
    nginx = start_nginx([backends[0].endpoint, backends[1].endpoint], worker_processes=2)
    sets = [
        ("md-1", "md-2"),
        ("md-2", "md-3"),
        ("md-0", "md-3"),
        ("md-0", "md-1", "md-2"),
        ("md-3",),
        ("md-1", "md-2", "md-3"),
        ("md-0", "md-2"),
        ("md-0", "md-1", "md-2", "md-3"),
        ("md-1",),
        ("md-0", "md-3"),
        ("md-1", "md-2"),
        ("md-0", "md-1", "md-3"),
    ]
    until_served_ms: list[float] = []
    apply_ms: list[float] = []
    for names in sets:
        start = time.monotonic()
        result = nginx.apply([by_name[n].endpoint for n in names])
        assert result.state == APPLIED, result
        wait_for(lambda names=names: serves_exactly(nginx, set(names)), CHANGE_DEADLINE_S, f"set {names}")  # type: ignore[misc]
        until_served_ms.append((time.monotonic() - start) * 1000)
        apply_ms.append(result.total_ms)

    with capsys.disabled():
        print(
            f"\n[reload] {len(sets)} changes: median {statistics.median(until_served_ms):.1f} ms "
            "from handing the config to the applier until a full round robin turn hits exactly the new set "
            f"(min {min(until_served_ms):.1f}, max {max(until_served_ms):.1f}); applier alone "
            "(nginx -t + rename + SIGHUP + old workers stopped accepting) "
            f"median {statistics.median(apply_ms):.1f} ms"
        )
    assert len(until_served_ms) >= 10
