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
* What is held is bounded: at most ``max_held_requests`` at once, each with a body of at most
  ``max_held_body_bytes`` (read whole into memory). nginx enforces both first (``limit_conn`` and
  ``client_max_body_size`` in the location that hands requests over, nginx_conf.py): a request over the
  cap gets 503 with Retry-After, a larger body 413, at once and without reaching us. The activator
  enforces them again on its own: a connection over the cap is answered in the accepting thread (no
  thread of its own), so threads and held bodies never grow past the cap whatever connects.

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
from io import BufferedIOBase
from typing import Any

log = logging.getLogger("scaledapi_proxy")

ACTIVITY_SOCKET = "activity.sock"
ACTIVATOR_SOCKET = "activator.sock"
# The two limits were added later: a line without them (an older operator's) means their defaults.
_SETTINGS = re.compile(
    r"^# scaledapi scale-to-zero: idle_seconds=(\d+) wake_timeout_seconds=(\d+)"
    r"(?: max_held_requests=(\d+) max_held_body_bytes=(\d+))?$",
    re.M,
)
_SERVER = re.compile(r"^\s*server (\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):(\d+) ", re.M)
# Not passed on by a proxy (RFC 9110 7.6.1), plus what the forwarded request sets itself.
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade")
)
# A held request's wait for its answer once forwarded: spec.proxy.upstreamTimeoutSeconds' default.
FORWARD_TIMEOUT_S = 30
RETRY_S = 0.1  # a held request whose every server refused tries again after this
HELD_BACKLOG = 1024  # connections nginx may open to the activator at once (a burst while asleep)
PEER_CHECK_S = 0.5  # a held request looks this often whether nginx gave up on it (its client went away)
REFUSE_TIMEOUT_S = 2.0  # a connection over the cap is read (its body dropped) for at most this long
DRAIN_CHUNK = 64 * 1024  # a body that is not held is read and dropped in pieces of this size

# The limits on what is held while asleep (spec.scaleToZero.maxHeldRequests, maxHeldBodyBytes). The CRD
# (manifests/crd.yaml) has the same bounds, defaults and budget rule; spec.py and nginx_conf.py check them.
MAX_HELD_REQUESTS_MIN, MAX_HELD_REQUESTS_MAX = 1, 1000
MAX_HELD_BODY_BYTES_MIN, MAX_HELD_BODY_BYTES_MAX = 1024, 1024 * 1024  # nginx's own limit while awake: 1m
DEFAULT_MAX_HELD_REQUESTS = 256
DEFAULT_MAX_HELD_BODY_BYTES = 64 * 1024
# Each held request costs its body plus about this much besides (its thread, about 20-40 KiB measured;
# nginx's buffers for two connections; socket buffers): rounded up.
HELD_OVERHEAD_BYTES = 64 * 1024
# maxHeldRequests x (maxHeldBodyBytes + HELD_OVERHEAD_BYTES) may be at most this: half of the nginx
# container's memory limit (128Mi, builders/proxy.py), the other half for nginx and the reloader.
HELD_MEMORY_BUDGET_BYTES = 64 * 1024 * 1024


def held_memory_bytes(max_held_requests: int, max_held_body_bytes: int) -> int:
    """The most that held requests may take: the figure the budget (HELD_MEMORY_BUDGET_BYTES) bounds."""
    return max_held_requests * (max_held_body_bytes + HELD_OVERHEAD_BYTES)


@dataclass(frozen=True)
class ScaleToZero:
    idle_seconds: int
    wake_timeout_seconds: int
    max_held_requests: int = DEFAULT_MAX_HELD_REQUESTS
    max_held_body_bytes: int = DEFAULT_MAX_HELD_BODY_BYTES

    def settings_line(self) -> str:
        return (
            f"# scaledapi scale-to-zero: idle_seconds={self.idle_seconds}"
            f" wake_timeout_seconds={self.wake_timeout_seconds}"
            f" max_held_requests={self.max_held_requests}"
            f" max_held_body_bytes={self.max_held_body_bytes}"
        )


def settings_of(text: str) -> ScaleToZero | None:
    """The scale-to-zero settings a config text carries; None when it does not enable it."""
    found = _SETTINGS.search(text)
    if found is None:
        return None
    idle, wake, held, body = found.groups()
    if held is None or body is None:
        return ScaleToZero(int(idle), int(wake))
    return ScaleToZero(int(idle), int(wake), int(held), int(body))


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
        with _SocketFile(path) as socket_file:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(socket_file.hidden)
            socket_file.publish()
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
    """A socket's file: bound at ``hidden``, then ``publish``ed at ``path`` once nginx's workers can use
    it (bound, listening, theirs to connect to), so that nginx never finds a socket it cannot reach yet.
    Files left by an earlier process are removed before binding, and ours after."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.hidden = path + ".new"

    def publish(self) -> None:
        _let_workers_connect(self.hidden)
        os.replace(self.hidden, self.path)  # the socket keeps its file's inode: atomic for nginx

    def _remove(self) -> None:
        for name in (self.path, self.hidden):
            if os.path.exists(name):
                os.unlink(name)

    def __enter__(self) -> _SocketFile:
        self._remove()
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()


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


Answer = tuple[int, str, list[tuple[str, str]], bytes]  # status, reason, headers, body


class _Slot:
    """A held request's place under the cap, taken when its connection is accepted and given back once,
    as soon as its answer is ready: before the answer is sent, so that we never count a request that
    nginx (whose ``limit_conn`` counts it until it has the answer) no longer counts."""

    def __init__(self, activator: Activator) -> None:
        self._activator = activator
        self._taken = True  # only the request's own thread touches it

    def release(self) -> None:
        if self._taken:
            self._taken = False
            self._activator._give_back()


class _ActivatorServer(socketserver.UnixStreamServer):
    """One thread per held request, at most the cap of them; a connection over the cap is answered by
    the accepting thread itself, so that nothing grows with a flood."""

    request_queue_size = HELD_BACKLOG

    def __init__(self, path: str, activator: Activator) -> None:
        self.activator = activator
        super().__init__(path, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        slot = self.activator._take()
        if slot is None:
            self._serve(request, client_address, None)
            return
        try:
            threading.Thread(
                target=self._serve, args=(request, client_address, slot), name="held-request", daemon=True
            ).start()
        except RuntimeError:  # no thread to be had: refused as over the cap
            slot.release()
            self._serve(request, client_address, None)

    def _serve(self, request: Any, client_address: Any, slot: _Slot | None) -> None:
        try:
            if slot is None:
                request.settimeout(REFUSE_TIMEOUT_S)  # the accepting thread: never for long
            _Handler(request, client_address, self, slot)
        except OSError as exc:  # nginx closed the connection, or a refused one was too slow
            log.warning("event=activator-connection-error error=%r", str(exc))
        except Exception:
            log.exception("event=activator-connection-failed")
        finally:
            if slot is not None:
                slot.release()
            self.shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ActivatorServer

    def __init__(
        self, request: Any, client_address: Any, server: _ActivatorServer, slot: _Slot | None = None
    ) -> None:
        self.slot = slot  # None: over the cap (``_ActivatorServer.process_request`` decides)
        super().__init__(request, client_address, server)

    def address_string(self) -> str:
        return "nginx"

    def log_message(self, format: str, *args: object) -> None:
        return  # nginx logs every request already

    def _handle(self) -> None:
        self.server.activator.handle(self, self.slot)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815


class Activator:
    """Holds the requests that come while no backend copy is ready, then forwards each one.

    At most ``max_held()`` at once, each body at most ``max_body_bytes()``: the settings in force, read
    for each request (a new config can change them while requests are held).
    """

    def __init__(
        self,
        path: str,
        activity: Activity,
        upstream: Upstream,
        wake_timeout_s: Callable[[], float],
        forwarded: Callable[[str, int, int, float], None] = lambda _host, _port, _status, _seconds: None,
        *,
        max_held: Callable[[], int] = lambda: DEFAULT_MAX_HELD_REQUESTS,
        max_body_bytes: Callable[[], int] = lambda: DEFAULT_MAX_HELD_BODY_BYTES,
    ) -> None:
        self.path = path
        self.activity = activity
        self.upstream = upstream
        self.wake_timeout_s = wake_timeout_s
        self.forwarded = forwarded  # (host, port, status, seconds) of each held request a copy answered
        self.max_held = max_held
        self.max_body_bytes = max_body_bytes
        self.server: _ActivatorServer | None = None
        self._holding = 0
        self._holding_lock = threading.Lock()
        self.refused = 0  # connections over the cap: 503 (nginx refuses them before us, normally)
        self.too_large = 0  # bodies over the limit: 413 (idem)

    @property
    def holding(self) -> int:
        """The requests held now: accepted under the cap, no answer ready yet."""
        with self._holding_lock:
            return self._holding

    def _take(self) -> _Slot | None:
        """A place under the cap for a new connection, or None (counted as refused) when it is full."""
        with self._holding_lock:
            if self._holding >= self.max_held():
                self.refused += 1
                return None
            self._holding += 1
        return _Slot(self)

    def _give_back(self) -> None:
        with self._holding_lock:
            self._holding -= 1

    def serve(self, stopping: threading.Event) -> None:
        """Serve on the unix socket until ``stopping`` (a thread's loop)."""
        with _SocketFile(self.path) as socket_file:
            server = _ActivatorServer(socket_file.hidden, self)  # bound and listening
            socket_file.publish()
            self.server = server

            def stop_when_asked() -> None:
                stopping.wait()
                server.shutdown()

            threading.Thread(target=stop_when_asked, name="activator-stop", daemon=True).start()
            server.serve_forever(poll_interval=0.5)

    def handle(self, request: BaseHTTPRequestHandler, slot: _Slot | None) -> None:
        """One request: refused (no ``slot``: over the cap), too large, or held and answered."""
        self.activity.seen()  # wakes the backend, a refused request too: there is demand
        held = time.monotonic()
        length = _content_length(request)
        if length is None:
            message = {"error": "bad request", "reason": "a held request needs a valid Content-Length"}
            _finish(request, slot, _json_answer(400, "Bad Request", message))
            return
        if slot is None:
            _drain(request.rfile, length)
            log.warning("event=held-request-refused reason=over-the-cap max_held=%d", self.max_held())
            _finish(request, None, over_the_cap(self.max_held()))
            return
        limit = self.max_body_bytes()
        if length > limit:
            with self._holding_lock:
                self.too_large += 1
            _drain(request.rfile, length)
            log.warning("event=held-request-refused reason=too-large bytes=%d limit=%d", length, limit)
            _finish(request, slot, too_large(limit))
            return
        body = _read_body(request.rfile, length)
        if body is None:
            return  # nginx closed the connection before the whole body came
        answer = self._hold(request, held, body)
        del body  # freed before the place under the cap is given back
        if answer is not None:
            _finish(request, slot, answer)

    def _hold(self, request: BaseHTTPRequestHandler, held: float, body: bytearray) -> Answer | None:
        """Wait for a ready copy and forward the request to it; the answer to send, or None when nginx
        gave the request up meanwhile (its client went away: it is not sent on)."""
        deadline = held + self.wake_timeout_s()
        while (left := deadline - time.monotonic()) > 0:
            servers = self.upstream.wait(min(left, PEER_CHECK_S))
            if not servers:
                if _peer_gone(request.connection):
                    log.info("event=held-request-abandoned held_ms=%.1f", (time.monotonic() - held) * 1000)
                    return None
                continue
            for host, port in servers:
                sent = time.monotonic()
                try:
                    status, reason, headers, payload = _forward(request, host, port, body)
                except NotSentError as exc:  # a copy that stops as it is picked: the next one
                    log.warning("event=held-forward-failed server=%s:%d error=%r", host, port, str(exc))
                    continue
                except OSError as exc:
                    # Sent, then no whole answer: sending it again (a POST) could do twice what it asks,
                    # so it is not, as nginx sends no non-idempotent request on to a next server.
                    log.warning("event=held-forward-broken server=%s:%d error=%r", host, port, str(exc))
                    message = {"error": "bad gateway", "reason": "the backend copy did not answer"}
                    return _json_answer(502, "Bad Gateway", message)
                self.forwarded(host, port, status, time.monotonic() - sent)
                log.info(
                    "event=held-request-served held_ms=%.1f server=%s:%d status=%d",
                    (time.monotonic() - held) * 1000,
                    host,
                    port,
                    status,
                )
                return status, reason, headers, payload
            time.sleep(min(RETRY_S, max(0.0, deadline - time.monotonic())))  # every server refused
        waited = time.monotonic() - held
        message = {"error": "service unavailable", "reason": f"no backend copy was ready after {waited:.0f}s"}
        return _json_answer(503, "Service Unavailable", message, retry_after=True)


def over_the_cap(max_held: int) -> Answer:
    """503 for a request that comes while ``max_held`` are held already (nginx answers the same)."""
    message = {"error": "service unavailable", "reason": over_the_cap_reason(max_held)}
    return _json_answer(503, "Service Unavailable", message, retry_after=True)


def over_the_cap_reason(max_held: int) -> str:
    return f"{max_held} requests are held already while the backend wakes up"


def too_large(limit: int) -> Answer:
    """413 for a body larger than what is held (nginx answers the same)."""
    message = {"error": "payload too large", "reason": too_large_reason(limit)}
    return _json_answer(413, "Payload Too Large", message)


def too_large_reason(limit: int) -> str:
    return f"a request that comes while the backend wakes up may carry at most {limit} bytes"


def _json_answer(status: int, reason: str, message: dict[str, str], retry_after: bool = False) -> Answer:
    headers = [("Content-Type", "application/json"), *([("Retry-After", "1")] if retry_after else [])]
    return status, reason, headers, (json.dumps(message) + "\n").encode()


def _content_length(request: BaseHTTPRequestHandler) -> int | None:
    """The body's length; None when it cannot be known (nginx sends every body with a length)."""
    if request.headers.get("Transfer-Encoding") is not None:
        return None
    raw = (request.headers.get("Content-Length") or "0").strip()
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _read_body(rfile: BufferedIOBase, length: int) -> bytearray | None:
    """The whole body, read into one buffer of its size; None when the connection ends before it."""
    body = bytearray(length)
    got = 0
    with memoryview(body) as view:
        while got < length:
            count = rfile.readinto(view[got:])
            if not count:
                return None
            got += count
    return body


def _drain(rfile: BufferedIOBase, length: int) -> None:
    """Read a body that is not held and drop it, so that nginx can send it all and read our answer (a
    unix socket closed with unread data resets the peer). At most the largest body nginx lets through."""
    left = min(length, MAX_HELD_BODY_BYTES_MAX)
    try:
        while left > 0:
            chunk = rfile.read(min(DRAIN_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
    except OSError:  # too slow (a refused connection's timeout) or gone: the answer goes out anyway
        return


def _peer_gone(connection: socket.socket) -> bool:
    """Whether nginx closed a held request's connection: it sends nothing after the body, so a read that
    would not block and finds the end of the stream means its client went away."""
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _finish(request: BaseHTTPRequestHandler, slot: _Slot | None, answer: Answer) -> None:
    if slot is not None:
        slot.release()
    _answer(request, *answer)


class NotSentError(OSError):
    """The copy refused the connection (or did not accept it in time): nothing of the request was sent."""


def _forward(request: BaseHTTPRequestHandler, host: str, port: int, body: bytearray) -> Answer:
    connection = http.client.HTTPConnection(host, port, timeout=FORWARD_TIMEOUT_S)
    try:
        try:
            connection.connect()
        except OSError as exc:
            raise NotSentError(str(exc)) from exc
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
