"""Scale to zero through the real nginx: while no backend copy is ready, nginx hands every API request
to the activator (zero.Activator), which holds it until a config with servers comes, then forwards it
to a real gunicorn backend; each request also reaches zero.Activity as a datagram. Past the wake
timeout a held request gets 503 with Retry-After. The reloader's threads are run here on their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from scaledapi_operator.nginx_conf import NginxSettings, render_nginx_conf
from scaledapi_proxy.zero import ACTIVATOR_SOCKET, ACTIVITY_SOCKET, Activator, Activity, ScaleToZero, Upstream
from tests.integration.itest_support import Backend, Nginx, let_workers_reach, wait_for

ZERO = ScaleToZero(idle_seconds=5, wake_timeout_seconds=3)


class Reloader:
    """The activity and activator threads of scaledapi_proxy.main.Reloader, on nginx's runtime dir."""

    def __init__(self, runtime: Path) -> None:
        self.stopping = threading.Event()
        self.activity = Activity()
        self.woken = threading.Event()
        self.activity.listeners.append(self.woken.set)
        self.upstream = Upstream()
        self.activator = Activator(
            str(runtime / ACTIVATOR_SOCKET), self.activity, self.upstream, lambda: ZERO.wake_timeout_seconds
        )
        for target in (
            lambda: self.activity.receive(str(runtime / ACTIVITY_SOCKET), self.stopping),
            lambda: self.activator.serve(self.stopping),
        ):
            threading.Thread(target=target, daemon=True).start()
        wait_for(lambda: (runtime / ACTIVATOR_SOCKET).exists(), 5, "the activator's socket")


@pytest.fixture
def asleep(start_nginx: Callable[..., Nginx]) -> Iterator[tuple[Nginx, Reloader]]:
    nginx = start_nginx([], scale_to_zero=ZERO)
    runtime = Path(nginx.settings.runtime_dir)
    let_workers_reach(runtime)
    reloader = Reloader(runtime)
    yield nginx, reloader
    reloader.stopping.set()


def get(nginx: Nginx) -> requests.Response:
    return requests.get(f"{nginx.url}/api/hello", timeout=30, headers={"Connection": "close"})


def test_held_requests_are_answered_by_the_first_ready_copy(
    asleep: tuple[Nginx, Reloader], start_backends: Callable[..., list[Backend]]
) -> None:
    nginx, reloader = asleep
    (backend,) = start_backends("woken-0")
    with ThreadPoolExecutor(max_workers=50) as pool:
        started = time.monotonic()
        futures = [pool.submit(get, nginx) for _ in range(50)]
        assert reloader.woken.wait(5), "a held request did not mark activity (the wake-up signal)"
        # The backend "starts": every request reaches the activator and is held there, none refused.
        wait_for(lambda: reloader.activator.holding == 50, 10, "the activator to hold 50 requests")
        assert not any(f.done() for f in futures), [f.result().status_code for f in futures if f.done()]
        awake = render_nginx_conf(NginxSettings(scale_to_zero=ZERO), [backend.endpoint])
        reloader.upstream.offer(awake)
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200] * 50
    assert {a.json()["instance"] for a in answers} == {"woken-0"}
    print(f"50 held requests answered {time.monotonic() - started:.2f}s after they were sent")


def test_each_request_through_nginx_is_seen_as_activity(asleep: tuple[Nginx, Reloader]) -> None:
    nginx, reloader = asleep
    reloader.upstream.offer("")  # no servers: the request waits out the timeout
    answer = get(nginx)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"] == "service unavailable"
    # nginx's datagram too, not only the activator's own mark; a health check is not a request: its
    # datagram, if nginx sent one, would be queued before the second API request's.
    wait_for(lambda: reloader.activity.datagrams == 1, 5, "nginx's datagram for the API request")
    assert requests.get(f"{nginx.url}/healthz", timeout=5).status_code == 200
    assert get(nginx).status_code == 503
    wait_for(lambda: reloader.activity.datagrams >= 2, 5, "nginx's datagram for the second API request")
    assert reloader.activity.datagrams == 2, "the health check was counted as a request"
