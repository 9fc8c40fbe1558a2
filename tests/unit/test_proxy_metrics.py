"""The nginx pod's metrics (scaledapi_proxy.metrics): what nginx's log datagrams, its stub_status and
the reloader's results become, in Prometheus' text format."""

from __future__ import annotations

import re

import pytest

from scaledapi_proxy.metrics import (
    MAX_UPSTREAM_SERIES,
    ProxyMetrics,
    StubStatus,
    parse_stub_status,
    status_class,
)

# nginx's syslog framing with `nohostname`: <PRI>TIMESTAMP TAG: MESSAGE
FRAME = b"<190>Dec  3 10:42:01 nginx: "


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition text, or None when it is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else None


def test_each_logged_request_counts_once_for_the_answer_and_once_per_try() -> None:
    metrics = ProxyMetrics()
    metrics.record_log(FRAME + b"200|10.0.0.1:5252|200|0.004")
    metrics.record_log(FRAME + b"200|10.0.0.2:5252|200|0.012")
    # A first try refused (502 logged for it), the second answered: both addresses count their try.
    metrics.record_log(FRAME + b"200|10.0.0.3:5252, 10.0.0.1:5252|502, 200|0.000, 0.003")
    text = metrics.exposition()
    assert sample(text, "scaledapi_proxy_requests_total", code="2xx") == 3
    assert sample(text, "scaledapi_proxy_upstream_responses_total", upstream="10.0.0.1:5252", code="2xx") == 2
    assert sample(text, "scaledapi_proxy_upstream_responses_total", upstream="10.0.0.2:5252", code="2xx") == 1
    assert sample(text, "scaledapi_proxy_upstream_responses_total", upstream="10.0.0.3:5252", code="5xx") == 1
    count = "scaledapi_proxy_upstream_response_seconds_count"
    assert sample(text, count, upstream="10.0.0.1:5252") == 2
    bucket = "scaledapi_proxy_upstream_response_seconds_bucket"
    assert sample(text, bucket, upstream="10.0.0.1:5252", le="0.0025") == 0
    assert sample(text, bucket, upstream="10.0.0.1:5252", le="0.005") == 2
    assert sample(text, bucket, upstream="10.0.0.1:5252", le="+Inf") == 2


def test_answers_nginx_gave_itself_and_held_requests_have_their_own_labels() -> None:
    metrics = ProxyMetrics()
    metrics.record_log(FRAME + b"503|-|-|-")  # no ready backend: nginx's own 503
    metrics.record_log(FRAME + b"200|unix:/tmp/nginx/activator.sock|200|1.52")  # held, then forwarded
    metrics.record_forward("10.0.0.9", 5252, 200, 0.01)  # the activator's forward, to the copy
    metrics.record_forward("fd00::9", 5252, 200, 0.01)
    text = metrics.exposition()
    assert sample(text, "scaledapi_proxy_requests_total", code="5xx") == 1
    assert sample(text, "scaledapi_proxy_upstream_responses_total", upstream="none", code="none") == 1
    assert sample(text, "scaledapi_proxy_upstream_responses_total", upstream="activator", code="2xx") == 1
    assert sample(text, "scaledapi_proxy_upstream_responses_total", upstream="10.0.0.9:5252", code="2xx") == 1
    assert (
        sample(text, "scaledapi_proxy_upstream_responses_total", upstream="[fd00::9]:5252", code="2xx") == 1
    )


def test_a_datagram_that_is_not_our_line_is_counted_as_unreadable_not_as_a_request() -> None:
    metrics = ProxyMetrics()
    metrics.record_log(FRAME + b"something else")
    text = metrics.exposition()
    assert sample(text, "scaledapi_proxy_log_unreadable_total") == 1
    assert sample(text, "scaledapi_proxy_requests_total", code="2xx") is None


@pytest.mark.parametrize(
    ("code", "expected"), [("200", "2xx"), ("404", "4xx"), ("502", "5xx"), ("-", "none")]
)
def test_status_class(code: str, expected: str) -> None:
    assert status_class(code) == expected


def test_applies_rejections_and_reload_durations() -> None:
    metrics = ProxyMetrics()
    metrics.config_applied("Applied", None, ["10.0.0.1:5252"])  # the first config: nginx not running yet
    metrics.config_applied("Applied", 0.03, ["10.0.0.1:5252", "10.0.0.2:5252"])
    metrics.config_applied("Rejected", None, [])
    text = metrics.exposition()
    assert sample(text, "scaledapi_proxy_config_applies_total", result="applied") == 2
    assert sample(text, "scaledapi_proxy_config_applies_total", result="rejected") == 1
    assert sample(text, "scaledapi_proxy_reload_seconds_count") == 1
    assert sample(text, "scaledapi_proxy_reload_seconds_bucket", le="0.05") == 1
    assert sample(text, "scaledapi_proxy_reload_seconds_bucket", le="0.025") == 0
    assert sample(text, "scaledapi_proxy_upstream_servers") == 2  # a rejected text changes nothing


def test_series_of_addresses_gone_from_the_upstream_are_dropped_past_the_bound() -> None:
    metrics = ProxyMetrics()
    for n in range(MAX_UPSTREAM_SERIES):
        metrics.record_log(FRAME + f"200|10.1.{n // 250}.{n % 250}:5252|200|0.001".encode())
    metrics.config_applied("Applied", 0.01, ["10.9.0.1:5252"])
    assert len(metrics.responses) == MAX_UPSTREAM_SERIES  # at the bound: kept
    metrics.record_log(FRAME + b"200|10.9.0.1:5252|200|0.001")
    metrics.config_applied("Applied", 0.01, ["10.9.0.1:5252"])
    assert set(metrics.responses) == {("10.9.0.1:5252", "2xx")}
    assert set(metrics.upstream_time) == {"10.9.0.1:5252"}


# As nginx writes it, trailing spaces included.
STUB = (
    "Active connections: 3 \nserver accepts handled requests\n 17 17 41 \nReading: 0 Writing: 1 Waiting: 2 \n"
)


def test_stub_status_becomes_connection_gauges_and_counters() -> None:
    stub = parse_stub_status(STUB)
    assert stub == StubStatus(active=3, accepted=17, handled=17, requests=41, reading=0, writing=1, waiting=2)
    text = ProxyMetrics(stub_status=lambda: stub, holding=lambda: 4).exposition()
    assert sample(text, "scaledapi_proxy_nginx_up") == 1
    assert sample(text, "scaledapi_proxy_nginx_connections", state="waiting") == 2
    assert sample(text, "scaledapi_proxy_nginx_connections_accepted_total") == 17
    assert sample(text, "scaledapi_proxy_nginx_http_requests_total") == 41
    assert sample(text, "scaledapi_proxy_held_requests") == 4
    assert parse_stub_status("not nginx") is None


def test_the_exposition_is_well_formed() -> None:
    """Every family has HELP and TYPE once, before its samples; every sample line parses."""
    metrics = ProxyMetrics(stub_status=lambda: parse_stub_status(STUB))
    metrics.record_log(FRAME + b"200|10.0.0.1:5252|200|0.004")
    metrics.config_applied("Applied", 0.02, ["10.0.0.1:5252"])
    text = metrics.exposition()
    assert text.endswith("\n")
    typed: list[str] = []
    sample_line = re.compile(r'^([a-z_]+)(\{([a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*)\})? -?[0-9.e+-]+$')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in typed, f"{name} typed twice"
            typed.append(name)
        elif not line.startswith("# HELP "):
            found = sample_line.match(line)
            assert found, f"unparsable sample: {line!r}"
            family = re.sub(r"_(bucket|sum|count)$", "", found.group(1))
            assert found.group(1) in typed or family in typed, f"{line!r} before its TYPE"
