"""Round robin through the real nginx over real gunicorn backends."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import requests

from scaledapi_operator.nginx_conf import Endpoint
from tests.integration.itest_support import Backend, Nginx, free_port, hello, wait_for


def test_k_times_m_requests_reach_each_backend_exactly_m_times(
    start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    k, m = 3, 100
    backends = start_backends("api-0", "api-1", "api-2")
    # Two workers and a fresh connection per request: the shared zone keeps one turn for both workers.
    nginx = start_nginx([b.endpoint for b in backends], worker_processes=2)

    counts = Counter(hello(nginx.url) for _ in range(k * m))

    print(f"round robin over {k} backends, {k * m} requests: {dict(sorted(counts.items()))}")
    assert counts == {b.name: m for b in backends}

    # The access log names the chosen upstream of every request.
    ports = Counter[str]()

    def logged_all() -> bool:
        lines = [ln for ln in nginx.access_log.read_text().splitlines() if "/api/hello" in ln]
        ports.clear()
        ports.update(ln.split("upstream=")[1].split()[0] for ln in lines if "upstream=" in ln)
        return sum(ports.values()) == k * m

    wait_for(logged_all, 10, "nginx access log lines for every request")
    assert ports == {f"127.0.0.1:{b.port}": m for b in backends}


def test_two_backends_alternate(
    start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    backends = start_backends("alt-a", "alt-b")
    nginx = start_nginx([b.endpoint for b in backends])

    seq = [hello(nginx.url) for _ in range(20)]

    assert set(seq) == {"alt-a", "alt-b"}
    assert all(seq[i] != seq[i + 1] for i in range(len(seq) - 1)), seq


def test_keepalive_client_also_round_robins(
    start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    backends = start_backends("ka-0", "ka-1", "ka-2")
    nginx = start_nginx([b.endpoint for b in backends])

    with requests.Session() as session:  # one client connection: balancing is per request
        names = [session.get(f"{nginx.url}/api/hello", timeout=5).json()["instance"] for _ in range(30)]

    assert Counter(names) == {b.name: 10 for b in backends}


def test_zero_endpoints_answer_503_json(start_nginx: Callable[..., Nginx]) -> None:
    nginx = start_nginx([])

    resp = requests.get(f"{nginx.url}/api/hello", timeout=5)

    assert resp.status_code == 503
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Retry-After"] == "1"
    assert json.loads(resp.text)["error"] == "service unavailable"
    health = requests.get(f"{nginx.url}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


def test_all_backends_down_answer_502_json(start_nginx: Callable[..., Nginx]) -> None:
    nginx = start_nginx([Endpoint("127.0.0.1", free_port())])  # nothing listens there

    resp = requests.get(f"{nginx.url}/api/hello", timeout=5)

    assert resp.status_code == 502
    assert resp.json()["error"] == "bad gateway"


def test_access_log_modes(
    start_backends: Callable[..., list[Backend]], start_nginx: Callable[..., Nginx]
) -> None:
    """Immediate logs each request as it ends, Buffered within its flush period (1 s; 5 s allowed
    here), Off never: a line per request in each of the first two, counted by upstream."""
    (backend,) = start_backends("log-a")
    immediate = start_nginx([backend.endpoint], access_log="Immediate")
    buffered = start_nginx([backend.endpoint], access_log="Buffered")
    off = start_nginx([backend.endpoint], access_log="Off")
    for nginx in (immediate, buffered, off):
        for _ in range(3):
            assert hello(nginx.url) == "log-a"

    def lines(nginx: Nginx) -> list[str]:
        return [ln for ln in nginx.access_log.read_text().splitlines() if "/api/hello" in ln]

    assert len(lines(immediate)) == 3  # written before the answer was sent
    wait_for(lambda: len(lines(buffered)) == 3, 5, "buffered access log lines after the flush period")
    assert all(f"upstream=127.0.0.1:{backend.port}" in ln for ln in lines(buffered))
    assert lines(off) == []  # checked after the buffered flush: Off had as long to write
