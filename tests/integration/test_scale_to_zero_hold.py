"""Scale to zero through the real nginx: while no backend copy is ready, nginx hands every API request
to the activator (zero.Activator), which holds it until a config with servers comes, then forwards it
to a real gunicorn backend; each request also reaches zero.Activity as a datagram. Past the wake
timeout a held request gets 503 with Retry-After. The reloader's threads are run here on their own."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from scaledapi_operator.nginx_conf import NginxSettings, render_nginx_conf
from scaledapi_proxy.zero import ScaleToZero
from tests.integration.itest_support import Backend, Nginx, ScaleToZeroThreads, wait_for

ZERO = ScaleToZero(idle_seconds=5, wake_timeout_seconds=3)


@pytest.fixture
def asleep(
    start_asleep: Callable[[ScaleToZero], tuple[Nginx, ScaleToZeroThreads]],
) -> tuple[Nginx, ScaleToZeroThreads]:
    return start_asleep(ZERO)


def get(nginx: Nginx) -> requests.Response:
    return requests.get(f"{nginx.url}/api/hello", timeout=30, headers={"Connection": "close"})


def test_held_requests_are_answered_by_the_first_ready_copy(
    asleep: tuple[Nginx, ScaleToZeroThreads], start_backends: Callable[..., list[Backend]]
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


def test_each_request_through_nginx_is_seen_as_activity(asleep: tuple[Nginx, ScaleToZeroThreads]) -> None:
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
