"""What is held while asleep is bounded, through the real nginx and directly at the activator's socket.

nginx refuses first: past ``max_held_requests`` held at once a request gets 503 with Retry-After, a body
over ``max_held_body_bytes`` 413, at once, without reaching the activator. The activator enforces both
again on its own (a connection over the cap is answered by its accepting thread), so that its threads
and held bodies never grow past the cap; a held request whose client went away is let go.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, render_nginx_conf
from scaledapi_proxy.zero import ACTIVATOR_SOCKET, ScaleToZero
from tests.integration.itest_support import Backend, Nginx, ScaleToZeroThreads, wait_for

CAP = 8
BODY_LIMIT = 4096
ZERO = ScaleToZero(
    idle_seconds=5, wake_timeout_seconds=30, max_held_requests=CAP, max_held_body_bytes=BODY_LIMIT
)
PROMPT_S = 2.0  # a refusal comes at once: well within this, while the held ones wait for 30 s


def held_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "held-request")


@pytest.fixture
def asleep(
    start_asleep: Callable[[ScaleToZero], tuple[Nginx, ScaleToZeroThreads]],
) -> tuple[Nginx, ScaleToZeroThreads]:
    return start_asleep(ZERO)


@dataclass(frozen=True)
class Answer:
    status: int | None
    seconds: float
    retry_after: str | None
    body: dict[str, object]
    error: str | None = None


def post(url: str, size: int, timeout_s: float = 60.0) -> Answer:
    started = time.monotonic()
    try:
        response = requests.post(
            f"{url}/api/echo", data=b"x" * size, timeout=timeout_s, headers={"Connection": "close"}
        )
    except requests.RequestException as exc:
        return Answer(None, time.monotonic() - started, None, {}, f"{type(exc).__name__}: {exc}")
    seconds = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = {"text": response.text[:200]}
    return Answer(response.status_code, seconds, response.headers.get("Retry-After"), body)


def test_past_the_cap_nginx_refuses_at_once_while_the_held_ones_wait_and_are_answered(
    asleep: tuple[Nginx, ScaleToZeroThreads], start_backends: Callable[..., list[Backend]]
) -> None:
    nginx, reloader = asleep
    (backend,) = start_backends("woken-0")
    most_threads = 0
    watching = threading.Event()

    def watch_threads() -> None:
        nonlocal most_threads
        while not watching.is_set():
            most_threads = max(most_threads, held_threads())
            time.sleep(0.005)  # sampling interval of the thread count

    watcher = threading.Thread(target=watch_threads, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(max_workers=CAP + 100) as pool:
        held = [pool.submit(post, nginx.url, BODY_LIMIT) for _ in range(CAP)]
        wait_for(lambda: reloader.activator.holding == CAP, 10, f"the activator to hold {CAP} requests")
        assert held_threads() == CAP
        # A flood on top: every one is refused at once, none reaches the activator.
        refused = list(pool.map(lambda _: post(nginx.url, BODY_LIMIT), range(100)))
        assert reloader.activator.holding == CAP and not any(f.done() for f in held)
        assert held_threads() == CAP
        wait_for(lambda: reloader.activity.datagrams >= 1, 5, "a datagram for a refused request")
        refused_datagrams = reloader.activity.datagrams
        reloader.wake(backend)
        answered = [f.result() for f in held]
    watching.set()
    watcher.join(5)

    assert [a.status for a in refused] == [503] * 100, {a.status or a.error for a in refused}
    assert {a.retry_after for a in refused} == {"1"}
    assert {str(a.body.get("reason")) for a in refused} == {
        f"{CAP} requests are held already while the backend wakes up"
    }
    assert max(a.seconds for a in refused) < PROMPT_S, sorted(a.seconds for a in refused)[-5:]
    assert reloader.activator.refused == 0  # nginx refused them, before the activator
    # The refused requests still count as requests: nginx sends a datagram for each (those of the held
    # ones come when they are answered). Not all of a burst's arrive: a unix datagram socket queues
    # only net.unix.max_dgram_qlen (10 by default) and nginx drops what does not fit.
    assert refused_datagrams >= 1

    assert [a.status for a in answered] == [200] * CAP, [a.error or a.body for a in answered]
    assert [a.body for a in answered] == [{"instance": "woken-0", "bytes": BODY_LIMIT}] * CAP
    assert most_threads == CAP, f"{most_threads} held-request threads at most, the cap is {CAP}"
    wait_for(lambda: held_threads() == 0 and reloader.activator.holding == 0, 5, "the held threads to end")
    refusal = sorted(a.seconds for a in refused)
    print(f"100 refusals past a cap of {CAP}: median {refusal[50]:.3f}s, max {refusal[-1]:.3f}s")


def test_a_larger_body_gets_413_at_once_and_still_counts_as_a_request(
    asleep: tuple[Nginx, ScaleToZeroThreads],
) -> None:
    nginx, reloader = asleep
    answer = post(nginx.url, BODY_LIMIT + 1)
    assert answer.status == 413, answer
    assert answer.body == {
        "error": "payload too large",
        "reason": f"a request that comes while the backend wakes up may carry at most {BODY_LIMIT} bytes",
    }
    assert answer.seconds < PROMPT_S
    wait_for(lambda: reloader.activity.datagrams == 1, 5, "nginx's datagram for the refused request")
    assert reloader.activator.holding == 0 and reloader.activator.too_large == 0  # nginx refused it
    assert post(nginx.url, BODY_LIMIT, timeout_s=0.5).error is not None  # the limit itself: held


def test_a_held_request_whose_client_went_away_is_let_go_and_not_sent_on(
    asleep: tuple[Nginx, ScaleToZeroThreads], start_backends: Callable[..., list[Backend]]
) -> None:
    nginx, reloader = asleep
    answer = post(nginx.url, 10, timeout_s=0.5)  # the client gives up while it is held
    assert answer.error is not None and "Timeout" in answer.error
    wait_for(lambda: reloader.activator.holding == 0, 5, "the activator to let the request go")
    wait_for(lambda: held_threads() == 0, 5, "its thread to end")
    (backend,) = start_backends("woken-0")
    reloader.wake(backend)
    assert post(nginx.url, 10).status == 200  # nginx still has the asleep config: held, then forwarded
    assert reloader.forwarded == [200]  # only this one reached the backend


# --- the activator on its own: a client that does not respect nginx's limits ---------------------------


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.path))
        self.sock = sock


def direct_post(
    path: Path, size: int, timeout_s: float = 60.0
) -> tuple[int, dict[str, str], dict[str, object]]:
    """One POST straight to the activator's socket, as nginx sends it (HTTP/1.0, a length, the body)."""
    connection = UnixConnection(path, timeout_s)
    try:
        connection.request("POST", "/api/echo", body=b"y" * size, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def alone(tmp_path: Path) -> Iterator[tuple[Path, ScaleToZeroThreads]]:
    reloader = ScaleToZeroThreads(
        tmp_path, ScaleToZero(5, 30, max_held_requests=2, max_held_body_bytes=BODY_LIMIT)
    )
    yield tmp_path / ACTIVATOR_SOCKET, reloader
    reloader.stopping.set()


def test_the_activator_refuses_past_its_cap_in_its_accepting_thread(
    alone: tuple[Path, ScaleToZeroThreads], start_backends: Callable[..., list[Backend]]
) -> None:
    path, reloader = alone
    with ThreadPoolExecutor(max_workers=2) as pool:
        held = [pool.submit(direct_post, path, BODY_LIMIT) for _ in range(2)]
        wait_for(lambda: reloader.activator.holding == 2, 5, "the activator to hold 2 requests")
        started = time.monotonic()
        for _ in range(20):  # each with a body the activator reads and drops, so that nginx could send it
            status, headers, body = direct_post(path, BODY_LIMIT, timeout_s=PROMPT_S)
            assert (status, headers["Retry-After"]) == (503, "1")
            assert body["reason"] == "2 requests are held already while the backend wakes up"
        refusals_s = time.monotonic() - started
        assert held_threads() == 2 and reloader.activator.refused == 20
        (backend,) = start_backends("woken-0")
        reloader.wake(backend)
        answers = [f.result() for f in held]
    assert [(status, body) for status, _, body in answers] == [
        (200, {"instance": "woken-0", "bytes": BODY_LIMIT})
    ] * 2
    assert refusals_s < PROMPT_S
    wait_for(lambda: held_threads() == 0, 5, "the held threads to end")


def test_the_activator_refuses_a_larger_body_without_holding_it(
    alone: tuple[Path, ScaleToZeroThreads],
) -> None:
    path, reloader = alone
    status, headers, body = direct_post(path, BODY_LIMIT + 1, timeout_s=PROMPT_S)
    assert status == 413 and "Retry-After" not in headers
    assert body["error"] == "payload too large"
    assert reloader.activator.too_large == 1 and reloader.activator.holding == 0
    wait_for(lambda: held_threads() == 0, 5, "its thread to end")


def test_a_request_without_a_usable_length_is_refused(alone: tuple[Path, ScaleToZeroThreads]) -> None:
    path, reloader = alone
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROMPT_S)
        sock.connect(str(path))
        sock.sendall(b"POST /api/echo HTTP/1.0\r\nContent-Length: lots\r\n\r\n")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert reloader.activator.holding == 0


class ClosesWithoutAnswering:
    """A copy that takes a request whole and closes without a word: it got the request, it may have done
    what it asks. Counts the requests it got."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    received += chunk
                self.requests += 1

    def close(self) -> None:
        self.listener.close()


def refused_port() -> int:
    """A loopback port that nothing listens on (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


def offer(reloader: ScaleToZeroThreads, ports: list[int]) -> None:
    """Copies at these loopback ports, some of which no Backend runs on."""
    endpoints = [Endpoint("127.0.0.1", port) for port in ports]
    reloader.upstream.offer(render_nginx_conf(NginxSettings(scale_to_zero=reloader.zero), endpoints))


def test_a_held_request_goes_on_to_the_next_copy_only_when_the_first_refused_the_connection(
    alone: tuple[Path, ScaleToZeroThreads], start_backends: Callable[..., list[Backend]]
) -> None:
    path, reloader = alone
    (backend,) = start_backends("woken-0")
    offer(reloader, sorted([refused_port(), backend.port]))
    for _ in range(2):  # whichever comes first in the upstream
        status, _, body = direct_post(path, 100, timeout_s=PROMPT_S * 5)
        assert (status, body) == (200, {"instance": "woken-0", "bytes": 100})


def test_a_held_request_that_reached_a_copy_is_never_sent_to_another(
    alone: tuple[Path, ScaleToZeroThreads], start_backends: Callable[..., list[Backend]]
) -> None:
    """Two requests over a silent copy and a good one: the upstream's round robin starts each at another
    copy, so one of them meets the silent copy first. It gets 502 and goes nowhere else."""
    path, reloader = alone
    (backend,) = start_backends("woken-0")
    silent = ClosesWithoutAnswering()
    try:
        offer(reloader, [silent.port, backend.port])
        answers = [direct_post(path, 100, timeout_s=PROMPT_S * 5) for _ in range(2)]
    finally:
        silent.close()
    by_status = {status: (headers, body) for status, headers, body in answers}
    assert sorted(by_status) == [200, 502], answers
    assert by_status[200][1] == {"instance": "woken-0", "bytes": 100}
    assert by_status[502][1]["error"] == "bad gateway" and "Retry-After" not in by_status[502][0]
    assert silent.requests == 1, "the request the silent copy got was sent again"
    assert reloader.forwarded == [200]
