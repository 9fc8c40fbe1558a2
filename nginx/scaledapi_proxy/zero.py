"""Scale to zero, the nginx pod's side: count requests, say when idle, hold requests while asleep.

* nginx sends one syslog datagram per API request to ``activity.sock`` in its runtime directory (when
  the config enables scale to zero or metrics); ``Activity`` receives them and keeps the time of the
  last, and hands each to the metrics (metrics.py).
* The pod is idle when no request came for ``idle_seconds``; it says so in its report (``idle``), and
  the operator takes the backend to 0 copies once every nginx pod is idle.
* While no backend copy is ready, nginx hands every API request to ``Activator`` on ``activator.sock``.
  It marks activity at once (the report turns ``idle: false``, which wakes the backend), holds the
  request until a config with backend servers arrives, and forwards it to one of them. After
  ``wake_timeout_seconds`` it answers 503 with Retry-After.

The settings travel in the config text itself, on one comment line the operator renders
(``settings_line``), so that the text's hash still covers everything the pod acts on.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

log = logging.getLogger("scaledapi_proxy")

ACTIVITY_SOCKET = "activity.sock"
ACTIVATOR_SOCKET = "activator.sock"
_SETTINGS = re.compile(r"^# scaledapi scale-to-zero: idle_seconds=(\d+) wake_timeout_seconds=(\d+)$", re.M)
_SERVER = re.compile(r"^\s*server (\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):(\d+) ", re.M)
# Not passed on by a proxy (RFC 9110 7.6.1), plus what the forwarded request sets itself.
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade")
)
RETRY_S = 0.1  # a held request whose every server refused tries again after this
HELD_BACKLOG = 1024  # connections nginx may open to the activator at once (a burst while asleep)


@dataclass(frozen=True)
class ScaleToZero:
    idle_seconds: int
    wake_timeout_seconds: int

    def settings_line(self) -> str:
        return (
            f"# scaledapi scale-to-zero: idle_seconds={self.idle_seconds}"
            f" wake_timeout_seconds={self.wake_timeout_seconds}"
        )


def settings_of(text: str) -> ScaleToZero | None:
    """The scale-to-zero settings a config text carries; None when it does not enable it."""
    found = _SETTINGS.search(text)
    return None if found is None else ScaleToZero(int(found.group(1)), int(found.group(2)))


def servers_of(text: str) -> list[tuple[str, int]]:
    """The backend servers of a config text's upstream, in order: (host, port)."""
    return [(host.strip("[]"), int(port)) for host, port in _SERVER.findall(text)]


class Activity:
    """The time of the last API request, from nginx's datagrams and from held requests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last = clock()  # a pod that just started is not idle
        self._lock = threading.Lock()
        self.listeners: list[Callable[[], None]] = []
        # Each datagram's bytes, for the metrics (metrics.ProxyMetrics.record_log).
        self.datagram_listeners: list[Callable[[bytes], None]] = []
        self.datagrams = 0  # nginx's datagrams received: one per API request it logged

    def seen(self) -> None:
        with self._lock:
            self._last = self.clock()
        for listener in self.listeners:
            listener()

    def idle_for(self) -> float:
        with self._lock:
            return self.clock() - self._last

    def receive(self, path: str, stopping: threading.Event) -> None:
        """Receive nginx's datagrams at ``path`` until ``stopping`` (a thread's loop)."""
        with _SocketFile(path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(path)
            _let_workers_connect(path)
            sock.settimeout(0.5)
            with sock:
                while not stopping.is_set():
                    try:
                        datagram = sock.recv(4096)
                    except TimeoutError:
                        continue
                    self.datagrams += 1  # this thread's alone
                    self.seen()
                    for listener in self.datagram_listeners:
                        listener(datagram)


def _let_workers_connect(path: str) -> None:
    """nginx's workers connect to our sockets: in the pod they run as our uid, but an nginx started as
    root (the integration tests) runs them as another user. The directory is the pod's own emptyDir."""
    os.chmod(path, 0o666)  # noqa: S103


class _SocketFile:
    """Remove a socket file left by an earlier process before binding, and after."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __exit__(self, *exc: object) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)


class Upstream:
    """The backend servers of the newest config, for the activator; waiters are woken when some come."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._servers: list[tuple[str, int]] = []
        self._turn = itertools.count()

    def offer(self, text: str) -> None:
        servers = servers_of(text)
        with self._cond:
            self._servers = servers
            if servers:
                self._cond.notify_all()

    def wait(self, timeout_s: float) -> list[tuple[str, int]]:
        """The servers, in a turn of round robin, once there are any; [] after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._servers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self._cond.wait(left)
            start = next(self._turn) % len(self._servers)
            return self._servers[start:] + self._servers[:start]


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = HELD_BACKLOG


class Activator:
    """Holds the requests that come while no backend copy is ready, then forwards each one."""

    def __init__(
        self,
        path: str,
        activity: Activity,
        upstream: Upstream,
        wake_timeout_s: Callable[[], float],
        forwarded: Callable[[str, int, int, float], None] = lambda _host, _port, _status, _seconds: None,
    ) -> None:
        self.path = path
        self.activity = activity
        self.upstream = upstream
        self.wake_timeout_s = wake_timeout_s
        self.forwarded = forwarded  # (host, port, status, seconds) of each held request a copy answered
        self.server: _UnixHTTPServer | None = None
        self._holding = 0
        self._holding_lock = threading.Lock()

    @property
    def holding(self) -> int:
        """The requests held now: read but not answered yet."""
        with self._holding_lock:
            return self._holding

    def _count(self, change: int) -> None:
        with self._holding_lock:
            self._holding += change

    def serve(self, stopping: threading.Event) -> None:
        """Serve on the unix socket until ``stopping`` (a thread's loop)."""
        activator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def address_string(self) -> str:
                return "nginx"

            def log_message(self, format: str, *args: object) -> None:
                return  # nginx logs every request already

            def _handle(self) -> None:
                activator.handle(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815

        with _SocketFile(self.path):
            server = _UnixHTTPServer(self.path, Handler)
            _let_workers_connect(self.path)
            self.server = server

            def stop_when_asked() -> None:
                stopping.wait()
                server.shutdown()

            threading.Thread(target=stop_when_asked, name="activator-stop", daemon=True).start()
            server.serve_forever(poll_interval=0.5)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        self.activity.seen()  # wakes the backend: the report says idle false
        held = time.monotonic()
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        self._count(+1)
        try:
            self._hold_and_answer(request, held, body)
        finally:
            self._count(-1)

    def _hold_and_answer(self, request: BaseHTTPRequestHandler, held: float, body: bytes) -> None:
        deadline = held + self.wake_timeout_s()
        while (left := deadline - time.monotonic()) > 0:
            for host, port in self.upstream.wait(left):
                sent = time.monotonic()
                try:
                    status, reason, headers, payload = _forward(request, host, port, body)
                except OSError as exc:  # a copy that stops as it is picked: the next one
                    log.warning("event=held-forward-failed server=%s:%d error=%r", host, port, str(exc))
                    continue
                self.forwarded(host, port, status, time.monotonic() - sent)
                log.info(
                    "event=held-request-served held_ms=%.1f server=%s:%d status=%d",
                    (time.monotonic() - held) * 1000,
                    host,
                    port,
                    status,
                )
                _answer(request, status, reason, headers, payload)
                return
            time.sleep(min(RETRY_S, max(0.0, deadline - time.monotonic())))  # every server refused
        waited = time.monotonic() - held
        message = {"error": "service unavailable", "reason": f"no backend copy was ready after {waited:.0f}s"}
        _answer(
            request,
            503,
            "Service Unavailable",
            [("Content-Type", "application/json"), ("Retry-After", "1")],
            (json.dumps(message) + "\n").encode(),
        )


def _forward(
    request: BaseHTTPRequestHandler, host: str, port: int, body: bytes
) -> tuple[int, str, list[tuple[str, str]], bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Connection"] = "close"
        connection.request(request.command, request.path, body=body or None, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in (*_HOP_BY_HOP, "content-length")]
        return response.status, response.reason, kept, payload
    finally:
        connection.close()


def _answer(
    request: BaseHTTPRequestHandler, status: int, reason: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    request.send_response(status, reason)
    for key, value in headers:
        request.send_header(key, value)
    request.send_header("Content-Length", str(len(body)))
    request.send_header("Connection", "close")
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)
    request.close_connection = True
