"""Render the nginx configuration of the proxy pods.

Pure functions only: the operator calls :func:`render_nginx_conf` with the ready backend addresses and writes
the text into ConfigMap ``NAME-proxy``; the nginx pod checks it with ``nginx -t`` before it goes live.

Nothing untrusted is pasted into the text without validation: addresses go through :mod:`ipaddress`, ports
and numbers are checked integers, the runtime directory is an absolute path of safe characters. The output
is deterministic (endpoints sorted and de-duplicated), so equal inputs give equal text and an equal hash.

The config is self-contained (no ``include``), writes nothing outside ``runtime_dir``, logs errors to stderr
and requests to stdout, has no ``user`` directive (nginx runs as non-root) and only uses directives that
nginx 1.22 (Debian bookworm) already knows.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

# The hash is the contract between the operator (annotation scaledapi.dev/config-hash) and the nginx
# pods' reports: one definition, in the stdlib-only package that both images install.
from scaledapi_proxy.applier import config_hash
from scaledapi_proxy.metrics import STUB_STATUS_PATH, STUB_STATUS_SOCKET
from scaledapi_proxy.zero import (
    ACTIVATOR_SOCKET,
    ACTIVITY_SOCKET,
    HELD_MEMORY_BUDGET_BYTES,
    MAX_HELD_BODY_BYTES_MAX,
    MAX_HELD_BODY_BYTES_MIN,
    MAX_HELD_REQUESTS_MAX,
    MAX_HELD_REQUESTS_MIN,
    ScaleToZero,
    held_memory_bytes,
    over_the_cap_reason,
    too_large_reason,
)

__all__ = ["Endpoint", "NginxSettings", "config_hash", "render_nginx_conf"]

UPSTREAM_NAME = "scaledapi_backend"
# Enough for the 50 replicas the CRD allows (one peer takes well under 1 KiB of the zone).
UPSTREAM_ZONE_SIZE = "128k"
# Idle connections each worker keeps to the backends; the backend keeps idle connections open longer than
# this (gunicorn keepalive 75 s > keepalive_timeout 30 s) so nginx is the side that closes them.
UPSTREAM_KEEPALIVE = 16
UPSTREAM_KEEPALIVE_TIMEOUT_S = 30
CONNECT_TIMEOUT = "1s"
WORKER_CONNECTIONS = 1024
# While asleep nginx counts the requests it hands to the activator in this zone (limit_conn), shared by
# its workers and kept across reloads (same name and size); one key, the server's port.
HELD_ZONE = "scaledapi_held"
HELD_ZONE_SIZE = "64k"
# spec.proxy.accessLog -> the access_log directive. A write per request is what costs (measured in
# make bench); a buffer lets nginx write many lines at once and still flushes at least every second.
ACCESS_LOG_DIRECTIVES = {
    "Buffered": "access_log /dev/stdout scaledapi buffer=32k flush=1s;",
    "Immediate": "access_log /dev/stdout scaledapi;",
    "Off": "access_log off;",
}

# The line each API request sends to the reloader (zero.Activity, metrics.ProxyMetrics.record_log):
# the answer's status, then nginx's per-try lists of upstream addresses, statuses and response times.
METRICS_LOG_FORMAT = "$status|$upstream_addr|$upstream_status|$upstream_response_time"

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class Endpoint:
    """One ready backend address, as found in the EndpointSlices of ``NAME-backend`` (or
    ``NAME-canary``), with its nginx ``weight`` and whether it is a ``backup`` (weights.py)."""

    ip: str
    port: int
    weight: int = 1
    backup: bool = False

    def sort_key(self) -> tuple[int, int, int]:
        """Numeric order of the address (IPv4 before IPv6), then the port; raises on a bad address."""
        ip = ipaddress.ip_address(self.ip)
        return (ip.version, int(ip), self.port)


@dataclass(frozen=True)
class NginxSettings:
    """What the renderer needs from the ScaledApi spec; usable without a cluster."""

    listen_port: int = 8080
    runtime_dir: str = "/tmp/nginx"  # pid file and temp paths (an emptyDir in the pod)  # noqa: S108
    worker_processes: int = 1
    next_upstream_tries: int = 3
    upstream_timeout_seconds: int = 30
    access_log: str = "Buffered"
    scale_to_zero: ScaleToZero | None = None
    # Per-request datagrams for the metrics, and stub_status on a unix socket (metrics.py).
    metrics: bool = False

    @property
    def logs_to_reloader(self) -> bool:
        """Whether each API request is sent to the reloader (scale to zero counts them, metrics too)."""
        return self.metrics or self.scale_to_zero is not None


def _check_int(name: str, value: object, low: int, high: int) -> int:
    # bool is an int subclass; True is not a port.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


def _check_settings(settings: NginxSettings) -> None:
    _check_int("listen_port", settings.listen_port, 1, 65535)
    _check_int("worker_processes", settings.worker_processes, 1, 64)
    _check_int("next_upstream_tries", settings.next_upstream_tries, 1, 100)
    _check_int("upstream_timeout_seconds", settings.upstream_timeout_seconds, 1, 3600)
    if settings.access_log not in ACCESS_LOG_DIRECTIVES:
        raise ValueError(
            f"access_log must be one of {sorted(ACCESS_LOG_DIRECTIVES)}, got {settings.access_log!r}"
        )
    zero = settings.scale_to_zero
    if zero is not None:
        _check_int("idle_seconds", zero.idle_seconds, 1, 86400)
        _check_int("wake_timeout_seconds", zero.wake_timeout_seconds, 1, 3600)
        _check_int("max_held_requests", zero.max_held_requests, MAX_HELD_REQUESTS_MIN, MAX_HELD_REQUESTS_MAX)
        _check_int(
            "max_held_body_bytes", zero.max_held_body_bytes, MAX_HELD_BODY_BYTES_MIN, MAX_HELD_BODY_BYTES_MAX
        )
        held = held_memory_bytes(zero.max_held_requests, zero.max_held_body_bytes)
        if held > HELD_MEMORY_BUDGET_BYTES:
            raise ValueError(
                f"max_held_requests x (max_held_body_bytes + overhead) is {held} bytes, "
                f"more than the {HELD_MEMORY_BUDGET_BYTES} held requests may take"
            )
    rd = settings.runtime_dir
    if not isinstance(rd, str) or not _SAFE_PATH.match(rd) or "/../" in f"{rd}/" or rd == "/":
        raise ValueError(f"runtime_dir must be an absolute path of [A-Za-z0-9._/-], got {rd!r}")


Address = tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _server_address(endpoint: Endpoint) -> Address:
    if not isinstance(endpoint.ip, str):
        raise ValueError(f"endpoint ip must be a string, got {endpoint.ip!r}")
    try:
        ip = ipaddress.ip_address(endpoint.ip)
    except ValueError as exc:
        raise ValueError(f"endpoint ip is not an IP address: {endpoint.ip!r}") from exc
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # ipaddress keeps a zone (fe80::1%eth0) in the text; nginx.conf gets plain addresses only.
        raise ValueError(f"endpoint ip has a zone id: {endpoint.ip!r}")
    port = _check_int("endpoint port", endpoint.port, 1, 65535)
    return (ip.version, ip, port)


def _servers(endpoints: Sequence[Endpoint]) -> list[tuple[Address, Endpoint]]:
    """One server per address, sorted; an address given twice keeps its first weight."""
    by_address: dict[Address, Endpoint] = {}
    for endpoint in endpoints:
        address = _server_address(endpoint)
        _check_int("endpoint weight", endpoint.weight, 1, 1000)
        if not isinstance(endpoint.backup, bool):
            raise ValueError(f"endpoint backup must be a bool, got {endpoint.backup!r}")
        by_address.setdefault(address, endpoint)
    return sorted(by_address.items(), key=lambda item: item[0])


def _format_server(address: Address, endpoint: Endpoint) -> str:
    _, ip, port = address
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    # weight=1 is nginx's default: left out, so that an upstream without a canary reads as before.
    weight = f" weight={endpoint.weight}" if endpoint.weight != 1 else ""
    backup = " backup" if endpoint.backup else ""
    return f"server {host}:{port}{weight} max_fails=1 fail_timeout=5s{backup};"


def render_nginx_conf(settings: NginxSettings, endpoints: Sequence[Endpoint]) -> str:
    """Return the complete ``nginx.conf`` for these settings and ready endpoints.

    Raises ValueError on an invalid address, port or setting. Endpoints are sorted and de-duplicated.
    With no endpoint the config still passes ``nginx -t`` and answers every API request with a JSON 503.
    """
    _check_settings(settings)
    addresses = _servers(endpoints)
    rd = settings.runtime_dir.rstrip("/")
    timeout = f"{settings.upstream_timeout_seconds}s"

    zero = settings.scale_to_zero
    lines: list[str] = [
        "# Rendered by scaledapi-operator (scaledapi_operator.nginx_conf); do not edit.",
        f"# Ready endpoints: {len(addresses)}",
        *([zero.settings_line()] if zero is not None else []),
        f"worker_processes {settings.worker_processes};",
        f"pid {rd}/nginx.pid;",
        "error_log stderr notice;",
        "",
        "events {",
        f"    worker_connections {_worker_connections(settings)};",
        "}",
        "",
        "http {",
        f"    client_body_temp_path {rd}/client_body_temp;",
        f"    proxy_temp_path {rd}/proxy_temp;",
        f"    fastcgi_temp_path {rd}/fastcgi_temp;",
        f"    uwsgi_temp_path {rd}/uwsgi_temp;",
        f"    scgi_temp_path {rd}/scgi_temp;",
        "",
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "    keepalive_timeout 65s;",
        "",
        "    log_format scaledapi '$remote_addr [$time_iso8601] \"$request\" $status $body_bytes_sent '",
        "                         'upstream=$upstream_addr upstream_status=$upstream_status '",
        "                         'request_time=$request_time upstream_time=$upstream_response_time';",
        f"    {ACCESS_LOG_DIRECTIVES[settings.access_log]}",
        *(
            [f"    log_format scaledapi_activity '{METRICS_LOG_FORMAT}';"]
            if settings.logs_to_reloader
            else []
        ),
        "",
        *(_stub_status_server(rd) if settings.metrics else []),
        *(_held_zone() if zero is not None and not addresses else []),
    ]
    if addresses:
        lines += [
            f"    upstream {UPSTREAM_NAME} {{",
            f"        zone {UPSTREAM_NAME} {UPSTREAM_ZONE_SIZE};",
            *(f"        {_format_server(address, endpoint)}" for address, endpoint in addresses),
            f"        keepalive {UPSTREAM_KEEPALIVE};",
            f"        keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT_S}s;",
            "    }",
            "",
        ]
    lines += [
        "    server {",
        f"        listen {settings.listen_port};",
        "",
        "        location = /healthz {",
        "            access_log off;",
        "            default_type application/json;",
        '            return 200 \'{"status":"ok"}\\n\';',
        "        }",
        "",
    ]
    if addresses:
        lines += [
            "        location / {",
            *_activity_log(settings),
            f"            proxy_pass http://{UPSTREAM_NAME};",
            "            proxy_http_version 1.1;",
            '            proxy_set_header Connection "";',
            "            proxy_set_header Host $http_host;",
            "            proxy_set_header X-Real-IP $remote_addr;",
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "            proxy_set_header X-Forwarded-Proto $scheme;",
            f"            proxy_connect_timeout {CONNECT_TIMEOUT};",
            f"            proxy_send_timeout {timeout};",
            f"            proxy_read_timeout {timeout};",
            "            # Retry on another backend; nginx never retries non-idempotent requests (no",
            "            # non_idempotent flag) once they were sent.",
            "            proxy_next_upstream error timeout http_502 http_503;",
            f"            proxy_next_upstream_tries {settings.next_upstream_tries};",
            f"            proxy_next_upstream_timeout {timeout};",
            "        }",
            "",
            "        error_page 502 @bad_gateway;",
            "        error_page 504 @gateway_timeout;",
            "",
            "        location @bad_gateway {",
            "            default_type application/json;",
            '            return 502 \'{"error":"bad gateway","reason":"no backend answered"}\\n\';',
            "        }",
            "",
            "        location @gateway_timeout {",
            "            default_type application/json;",
            '            return 504 \'{"error":"gateway timeout","reason":"backend timed out"}\\n\';',
            "        }",
        ]
    elif zero is not None:
        lines += _asleep_location(settings, rd)
    else:
        lines += [
            "        location / {",
            *_activity_log(settings),
            "            default_type application/json;",
            "            add_header Retry-After 1 always;",
            '            return 503 \'{"error":"service unavailable","reason":"no ready backend"}\\n\';',
            "        }",
        ]
    lines += [
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


def _stub_status_server(rd: str) -> list[str]:
    """nginx's connection counters for the metrics, on a unix socket only the pod can reach."""
    return [
        "    server {",
        f"        listen unix:{rd}/{STUB_STATUS_SOCKET};",
        "        access_log off;",
        f"        location = {STUB_STATUS_PATH} {{",
        "            stub_status;",
        "        }",
        "    }",
        "",
    ]


def _activity_log(settings: NginxSettings) -> list[str]:
    """With scale to zero or metrics, each API request also sends a datagram to the reloader
    (zero.Activity); an access_log in a location replaces the inherited one, so the stdout log is
    repeated here."""
    if not settings.logs_to_reloader:
        return []
    rd = settings.runtime_dir.rstrip("/")
    lines = [
        f"            access_log syslog:server=unix:{rd}/{ACTIVITY_SOCKET},nohostname scaledapi_activity;"
    ]
    if settings.access_log != "Off":
        lines.append(f"            {ACCESS_LOG_DIRECTIVES[settings.access_log]}")
    return lines


def _worker_connections(settings: NginxSettings) -> int:
    """Each held request takes two connections of a worker (its client's and the activator's), and all
    of them may land on one worker: room for the cap, and as many again for requests coming meanwhile."""
    zero = settings.scale_to_zero
    return WORKER_CONNECTIONS if zero is None else max(WORKER_CONNECTIONS, 2 * zero.max_held_requests + 256)


def _held_zone() -> list[str]:
    """The count of requests handed to the activator (limit_conn), kept in shared memory for all workers;
    the key is the one server's port, so there is one count."""
    return [f"    limit_conn_zone $server_port zone={HELD_ZONE}:{HELD_ZONE_SIZE};", ""]


def _asleep_location(settings: NginxSettings, rd: str) -> list[str]:
    """No backend copy is ready and scale to zero is on: the reloader's activator holds each request
    until one is (it wakes the backend), then forwards it; it answers 503 itself after the wake timeout.

    What is held is bounded here first: past ``max_held_requests`` at once a request gets 503 with
    Retry-After, a body over ``max_held_body_bytes`` 413, both at once, without reading the body into
    anything (nginx drops it) and without reaching the activator; both still count as activity."""
    zero = settings.scale_to_zero
    assert zero is not None
    hold = f"{zero.wake_timeout_seconds + settings.upstream_timeout_seconds + 5}s"
    over_the_cap = json_text(
        {"error": "service unavailable", "reason": over_the_cap_reason(zero.max_held_requests)}
    )
    too_large = json_text(
        {"error": "payload too large", "reason": too_large_reason(zero.max_held_body_bytes)}
    )
    return [
        "        location / {",
        *_activity_log(settings),
        f"            limit_conn {HELD_ZONE} {zero.max_held_requests};",
        "            limit_conn_status 503;",
        "            limit_conn_log_level info;  # each one is in the access log already",
        f"            client_max_body_size {zero.max_held_body_bytes};",
        f"            proxy_pass http://unix:{rd}/{ACTIVATOR_SOCKET}:;",
        "            proxy_set_header Host $http_host;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        f"            proxy_connect_timeout {CONNECT_TIMEOUT};",
        f"            proxy_send_timeout {hold};",
        f"            proxy_read_timeout {hold};",
        "            proxy_next_upstream off;",
        "        }",
        "",
        "        error_page 502 @bad_gateway;",
        "        error_page 503 @held_full;",
        "        error_page 413 @too_large;",
        "",
        "        location @bad_gateway {",
        "            default_type application/json;",
        '            return 502 \'{"error":"bad gateway","reason":"the activator did not answer"}\\n\';',
        "        }",
        "",
        "        location @held_full {",
        *_activity_log(settings),
        "            default_type application/json;",
        "            add_header Retry-After 1 always;",
        f"            return 503 '{over_the_cap}\\n';",
        "        }",
        "",
        "        location @too_large {",
        *_activity_log(settings),
        "            default_type application/json;",
        f"            return 413 '{too_large}\\n';",
        "        }",
    ]


def json_text(message: dict[str, str]) -> str:
    """A JSON object for a ``return`` directive in single quotes: compact, and no quote or backslash
    that nginx would read (the texts are ours: checked, not escaped)."""
    text = json.dumps(message, separators=(",", ":"))
    if "'" in text or "\\" in text:
        raise ValueError(f"not for a quoted nginx string: {text}")
    return text
