"""Prometheus metrics of one nginx pod, in the standard library only (the nginx image has no pip).

Where the figures come from:

* nginx open source has no per-upstream counters, but it can log each request as a syslog datagram to a
  unix socket. The config sends one per request to ``activity.sock`` (the socket that scale to zero
  reads, nginx_conf.METRICS_LOG_FORMAT); :meth:`ProxyMetrics.record_log` turns each into counts per
  upstream address and status class, and response times.
* nginx's own connection counters come from ``stub_status`` on a unix socket of the runtime directory,
  read at each scrape (:func:`read_stub_status`).
* The reloader reports each config it applied or rejected, with the reload's duration
  (:meth:`ProxyMetrics.config_applied`), and the activator its held requests.

:func:`serve` answers ``GET /metrics`` in Prometheus' text format 0.0.4 on the port the operator sets
(env ``SCALEDAPI_METRICS_PORT``).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("scaledapi_proxy")

STUB_STATUS_SOCKET = "status.sock"
STUB_STATUS_PATH = "/stub_status"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The `upstream` label of a request nginx answered itself (no ready backend), and of one it handed to
# the activator (scale to zero holds it; the activator's forward is counted under the copy's address).
NO_UPSTREAM = "none"
ACTIVATOR_UPSTREAM = "activator"
# Seconds; the latencies of an API behind a proxy, from a cache hit to a slow request.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RELOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Series of addresses no longer in the upstream are dropped once there are more than this many, so that
# a long-lived pod behind a churning backend keeps a bounded number of series.
MAX_UPSTREAM_SERIES = 256

# The log line nginx sends (nginx_conf.METRICS_LOG_FORMAT): status|upstream_addr|upstream_status|upstream_time
# nginx's syslog framing with `nohostname`: "<PRI>Mmm dd hh:mm:ss TAG: " (the tag is "nginx").
_SYSLOG_PREFIX = re.compile(rb"^<\d+>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} [^ ]*: ")


def status_class(code: str) -> str:
    """'200' -> '2xx'; anything that is not a status code (nginx logs '-' without an answer) -> 'none'."""
    return f"{code[0]}xx" if len(code) == 3 and code.isdigit() else "none"


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{_number(bound)}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {_number(self.total)}", f"{name}_count{braces} {self.count}"]
        return out


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class StubStatus:
    """nginx's stub_status counters."""

    active: int
    accepted: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int


_STUB = re.compile(
    r"Active connections:\s*(\d+).*?\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n"
    r"\s*Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)",
    re.S,
)


def parse_stub_status(text: str) -> StubStatus | None:
    found = _STUB.search(text)
    if found is None:
        return None
    return StubStatus(*(int(group) for group in found.groups()))


def read_stub_status(path: str, timeout_s: float = 1.0) -> StubStatus | None:
    """GET stub_status over nginx's unix socket; None when nginx does not answer (not started yet)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(f"GET {STUB_STATUS_PATH} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    _, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return parse_stub_status(body.decode("ascii", "replace"))


class ProxyMetrics:
    """The counters of one nginx pod; every method is safe to call from any thread."""

    def __init__(
        self,
        stub_status: Callable[[], StubStatus | None] = lambda: None,
        holding: Callable[[], int] = lambda: 0,
    ) -> None:
        self._lock = threading.Lock()
        self.stub_status = stub_status
        self.holding = holding
        self.requests: dict[str, int] = {}  # status class of the answer to the client -> count
        self.responses: dict[tuple[str, str], int] = {}  # (upstream address, status class) -> count
        self.upstream_time: dict[str, Histogram] = {}
        self.applies: dict[str, int] = {}
        self.reload = Histogram(RELOAD_BUCKETS)
        self.unreadable = 0  # datagrams that were not our log line
        self.current: set[str] = set()  # the addresses of the config in force

    # --- from nginx's log datagrams -----------------------------------------------------------------
    def record_log(self, datagram: bytes) -> None:
        """One request as nginx logged it (syslog over the unix socket)."""
        message = _SYSLOG_PREFIX.sub(b"", datagram, count=1).decode("ascii", "replace").strip()
        parts = message.split("|")
        if len(parts) != 4:
            with self._lock:
                self.unreadable += 1
            return
        status, addresses, statuses, times = parts
        with self._lock:
            key = status_class(status)
            self.requests[key] = self.requests.get(key, 0) + 1
            for address, code, took in _tries(addresses, statuses, times):
                self._response(address, status_class(code), _seconds(took))

    def record_forward(self, host: str, port: int, status: int, seconds: float) -> None:
        """A held request the activator forwarded to a copy (nginx saw only the activator)."""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        with self._lock:
            self._response(address, status_class(str(status)), seconds)

    def _response(self, address: str, code: str, seconds: float | None) -> None:
        self.responses[(address, code)] = self.responses.get((address, code), 0) + 1
        if seconds is not None:
            self.upstream_time.setdefault(address, Histogram(LATENCY_BUCKETS)).observe(seconds)

    # --- from the reloader --------------------------------------------------------------------------
    def config_applied(self, state: str, reload_s: float | None, addresses: Iterable[str]) -> None:
        """A config text was applied (``reload_s`` set when nginx reloaded) or rejected."""
        with self._lock:
            result = state.lower()
            self.applies[result] = self.applies.get(result, 0) + 1
            if reload_s is not None:
                self.reload.observe(reload_s)
            if result == "applied":
                self.current = set(addresses)
                self._drop_old_series()

    def _drop_old_series(self) -> None:
        addresses = {address for address, _ in self.responses} | set(self.upstream_time)
        if len(addresses) <= MAX_UPSTREAM_SERIES:
            return
        keep = self.current | {NO_UPSTREAM, ACTIVATOR_UPSTREAM}
        self.responses = {key: n for key, n in self.responses.items() if key[0] in keep}
        self.upstream_time = {a: h for a, h in self.upstream_time.items() if a in keep}

    # --- exposition ---------------------------------------------------------------------------------
    def exposition(self) -> str:
        stub = self.stub_status()  # outside the lock: a socket round trip
        held = self.holding()
        with self._lock:
            lines = [
                *_family(
                    "scaledapi_proxy_requests_total", "counter", "Requests nginx answered, by status class."
                ),
                *(
                    f'scaledapi_proxy_requests_total{{code="{c}"}} {n}'
                    for c, n in sorted(self.requests.items())
                ),
                *_family(
                    "scaledapi_proxy_upstream_responses_total",
                    "counter",
                    "Tries sent to each backend address, by status class of the answer (none: no answer).",
                ),
                *(
                    f'scaledapi_proxy_upstream_responses_total{{upstream="{_label(a)}",code="{c}"}} {n}'
                    for (a, c), n in sorted(self.responses.items())
                ),
                *_family(
                    "scaledapi_proxy_upstream_response_seconds",
                    "histogram",
                    "Time each backend address took to answer a try.",
                ),
            ]
            for address, histogram in sorted(self.upstream_time.items()):
                lines += histogram.lines(
                    "scaledapi_proxy_upstream_response_seconds", f'upstream="{_label(address)}"'
                )
            lines += [
                *_family(
                    "scaledapi_proxy_config_applies_total",
                    "counter",
                    "Config texts from ConfigMap NAME-proxy, by result (applied, rejected).",
                ),
                *(
                    f'scaledapi_proxy_config_applies_total{{result="{r}"}} {n}'
                    for r, n in sorted(self.applies.items())
                ),
                *_family(
                    "scaledapi_proxy_reload_seconds",
                    "histogram",
                    "From nginx's reload signal to its new workers.",
                ),
                *self.reload.lines("scaledapi_proxy_reload_seconds", ""),
                *_family(
                    "scaledapi_proxy_upstream_servers", "gauge", "Backend addresses in the config in force."
                ),
                f"scaledapi_proxy_upstream_servers {len(self.current)}",
                *_family("scaledapi_proxy_held_requests", "gauge", "Requests the activator holds now."),
                f"scaledapi_proxy_held_requests {held}",
                *_family(
                    "scaledapi_proxy_log_unreadable_total",
                    "counter",
                    "Log datagrams that were not a request line.",
                ),
                f"scaledapi_proxy_log_unreadable_total {self.unreadable}",
            ]
        lines += _stub_lines(stub)
        return "\n".join(lines) + "\n"


def _tries(addresses: str, statuses: str, times: str) -> list[tuple[str, str, str]]:
    """nginx's per-try lists ("a, b" for two tries of one upstream); an address that is not a backend's
    (nginx answered itself: '-'; the activator's unix socket) gets its own label."""
    if addresses in ("", "-"):
        return [(NO_UPSTREAM, "-", "-")]
    split_addresses = [a.strip() for a in addresses.replace(" : ", ", ").split(",")]
    split_statuses = [s.strip() for s in statuses.replace(" : ", ", ").split(",")]
    split_times = [t.strip() for t in times.replace(" : ", ", ").split(",")]
    tries = []
    for index, address in enumerate(split_addresses):
        code = split_statuses[index] if index < len(split_statuses) else "-"
        took = split_times[index] if index < len(split_times) else "-"
        tries.append((ACTIVATOR_UPSTREAM if address.startswith("unix:") else address, code, took))
    return tries


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _stub_lines(stub: StubStatus | None) -> Sequence[str]:
    up = [*_family("scaledapi_proxy_nginx_up", "gauge", "Whether nginx answered its stub_status.")]
    if stub is None:
        return [*up, "scaledapi_proxy_nginx_up 0"]
    return [
        *up,
        "scaledapi_proxy_nginx_up 1",
        *_family("scaledapi_proxy_nginx_connections", "gauge", "nginx's client connections now, by state."),
        f'scaledapi_proxy_nginx_connections{{state="active"}} {stub.active}',
        f'scaledapi_proxy_nginx_connections{{state="reading"}} {stub.reading}',
        f'scaledapi_proxy_nginx_connections{{state="writing"}} {stub.writing}',
        f'scaledapi_proxy_nginx_connections{{state="waiting"}} {stub.waiting}',
        *_family(
            "scaledapi_proxy_nginx_connections_accepted_total", "counter", "Client connections accepted."
        ),
        f"scaledapi_proxy_nginx_connections_accepted_total {stub.accepted}",
        *_family("scaledapi_proxy_nginx_connections_handled_total", "counter", "Client connections handled."),
        f"scaledapi_proxy_nginx_connections_handled_total {stub.handled}",
        *_family(
            "scaledapi_proxy_nginx_http_requests_total", "counter", "Client requests, stub_status included."
        ),
        f"scaledapi_proxy_nginx_http_requests_total {stub.requests}",
    ]


def serve(metrics: ProxyMetrics, port: int, stopping: threading.Event, host: str = "0.0.0.0") -> None:  # noqa: S104
    """Answer GET /metrics on ``port`` until ``stopping`` (a thread's loop)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return  # one line per scrape would drown the reloader's log

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = metrics.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True

    def stop_when_asked() -> None:
        stopping.wait()
        server.shutdown()

    threading.Thread(target=stop_when_asked, name="metrics-stop", daemon=True).start()
    log.info("event=metrics-serving port=%d", port)
    with server:
        server.serve_forever(poll_interval=0.5)
