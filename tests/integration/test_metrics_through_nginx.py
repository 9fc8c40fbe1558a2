"""The nginx pod's metrics with real parts: real nginx sends its log datagrams and answers stub_status,
real gunicorn backends answer, and ``python3 -m scaledapi_proxy`` serves GET /metrics. Per-copy
counts must be what the client saw."""

from __future__ import annotations

import collections
from collections.abc import Callable

import requests

from scaledapi_operator.nginx_conf import config_hash
from tests.e2e.prometheus import Samples, parse, value
from tests.integration.itest_support import Backend, ProxyRun, free_port, hello, http_ok, wait_for

DEADLINE_S = 15.0
REQUESTS = 90


def scrape(port: int) -> Samples:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def test_per_copy_counts_match_what_the_client_saw(
    proxy: Callable[..., ProxyRun], start_backends: Callable[..., list[Backend]]
) -> None:
    backends = start_backends("mx-a", "mx-b", "mx-c")
    port = free_port()
    run = proxy(metrics_port=port)
    text = run.render([b.endpoint for b in backends])
    run.api.set_text(text)
    wait_for(lambda: http_ok(f"{run.url}/healthz"), DEADLINE_S, f"nginx started by the proxy\n{run.log()}")
    wait_for(lambda: run.report_for(config_hash(text)) is not None, DEADLINE_S, "the first report")

    seen = collections.Counter(hello(run.url) for _ in range(REQUESTS))
    assert set(seen) == {"mx-a", "mx-b", "mx-c"}, seen
    # The datagrams travel on their own: poll until all have been read.
    wait_for(
        lambda: value(scrape(port), "scaledapi_proxy_requests_total", code="2xx") >= REQUESTS,
        DEADLINE_S,
        f"{REQUESTS} requests in the metrics",
    )
    samples = scrape(port)
    assert value(samples, "scaledapi_proxy_requests_total", code="2xx") == REQUESTS
    for backend in backends:
        address = f"127.0.0.1:{backend.port}"
        counted = value(samples, "scaledapi_proxy_upstream_responses_total", upstream=address, code="2xx")
        assert counted == seen[backend.name], (backend.name, counted, seen)
        timed = value(samples, "scaledapi_proxy_upstream_response_seconds_count", upstream=address)
        assert timed == seen[backend.name]
    assert value(samples, "scaledapi_proxy_config_applies_total", result="applied") == 1
    assert value(samples, "scaledapi_proxy_upstream_servers") == 3
    # nginx's own counters, read over its unix socket at each scrape.
    assert value(samples, "scaledapi_proxy_nginx_up") == 1
    assert value(samples, "scaledapi_proxy_nginx_http_requests_total") >= REQUESTS
    assert value(samples, "scaledapi_proxy_nginx_connections", state="active") >= 1

    # A change: applied by a reload, which the reload histogram counts.
    fewer = run.render([backends[0].endpoint])
    run.api.set_text(fewer)
    wait_for(lambda: run.report_for(config_hash(fewer)) is not None, DEADLINE_S, "the second report")
    samples = scrape(port)
    assert value(samples, "scaledapi_proxy_config_applies_total", result="applied") == 2
    assert value(samples, "scaledapi_proxy_reload_seconds_count") == 1
    assert value(samples, "scaledapi_proxy_upstream_servers") == 1
    broken = fewer.replace("proxy_pass http://", "proxy_passs http://")
    run.api.set_text(broken)
    wait_for(lambda: run.report_for(config_hash(broken)) is not None, DEADLINE_S, "the rejection report")
    assert value(scrape(port), "scaledapi_proxy_config_applies_total", result="rejected") == 1


def test_without_a_metrics_port_nothing_listens_and_nginx_sends_no_datagrams(
    proxy: Callable[..., ProxyRun], start_backends: Callable[..., list[Backend]]
) -> None:
    (backend,) = start_backends("mx-off")
    run = proxy()
    text = run.render([backend.endpoint])
    assert "scaledapi_activity" not in text and "stub_status" not in text
    run.api.set_text(text)
    wait_for(lambda: http_ok(f"{run.url}/healthz"), DEADLINE_S, f"nginx started by the proxy\n{run.log()}")
    assert hello(run.url) == "mx-off"
    assert "event=metrics-serving" not in run.log()
