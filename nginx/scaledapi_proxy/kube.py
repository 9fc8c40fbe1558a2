"""The reloader's only API I/O: list and watch one ConfigMap, merge-patch another (http.client + ssl).

Every call has a hard deadline: a timer shuts the socket down when a call overruns it, so neither a dead
connection nor a server that answers a byte at a time can hold a thread. A watch also fails after
``Timeouts.read_s`` of silence, which the server never lets a healthy watch reach: it ends the watch after
the ``timeoutSeconds`` we ask for (``Timeouts.watch_s``), and the caller lists and watches again.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from scaledapi_proxy.watch import ConfigMapState, WatchEvent, parse_list, parse_watch_line

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# Test hook only: a plain-http API base URL (e.g. http://127.0.0.1:8001) instead of the in-cluster one.
API_URL_ENV = "SCALEDAPI_KUBE_API_URL"
DEAD_WATCH_LIMIT_S = 60.0  # a dead watch connection must be noticed within this
HTTP_NOT_FOUND = 404
HTTP_GONE = 410


@dataclass(frozen=True)
class Timeouts:
    request_s: float = 10.0  # hard deadline of a list or a patch, from connect to the last byte
    watch_s: int = 40  # timeoutSeconds asked of the server: it ends a healthy watch after this
    read_s: float = 50.0  # this long without a byte on a watch: the connection is dead
    watch_deadline_s: float = 55.0  # hard deadline of a watch, should the server not end it

    def __post_init__(self) -> None:
        if not 0 < self.watch_s < self.read_s <= self.watch_deadline_s:
            raise ValueError(f"need 0 < watch_s < read_s <= watch_deadline_s, got {self}")
        if self.request_s <= 0:
            raise ValueError(f"request_s must be positive, got {self.request_s}")


class _Deadline:
    """Context manager: shut the connection's socket down when the call runs past ``seconds``.

    A blocked connect, send or read then returns at once; the call raises TimeoutError.
    """

    def __init__(self, conn: http.client.HTTPConnection, seconds: float, what: str) -> None:
        self.conn = conn
        self.seconds = seconds
        self.what = what
        self.expired = threading.Event()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired.set()
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown, also for an SSLSocket: a read blocked in another thread
                # wakes up with EOF or an error.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()
        if self.expired.is_set() and exc_type is not GeneratorExit:
            raise TimeoutError(f"{self.what} did not finish within {self.seconds:g}s") from exc


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


# What a call of KubeClient raises when it did not succeed (TimeoutError is an OSError).
REQUEST_ERRORS = (ApiError, OSError, http.client.HTTPException, ValueError)


class KubeClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = True,
        token_path: str | None = f"{SA_DIR}/token",
        ca_path: str | None = f"{SA_DIR}/ca.crt",
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen, shared safely
    ) -> None:
        self.host = host
        self.port = port
        self.timeouts = timeouts
        self.token_path = token_path
        self.ssl_context: ssl.SSLContext | None = None
        if tls:
            self.ssl_context = ssl.create_default_context(cafile=ca_path)

    @classmethod
    def from_environment(cls, timeouts: Timeouts = Timeouts()) -> KubeClient:  # noqa: B008
        override = os.environ.get(API_URL_ENV, "").strip()
        if override:
            url = urllib.parse.urlsplit(override)
            if url.scheme != "http" or not url.hostname:
                raise ValueError(f"{API_URL_ENV} must be an http:// URL, got {override!r}")
            return cls(
                url.hostname, url.port or 80, tls=False, token_path=None, ca_path=None, timeouts=timeouts
            )
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        if not host:
            raise ValueError("KUBERNETES_SERVICE_HOST is not set: not running in a pod?")
        return cls(host, int(os.environ.get("KUBERNETES_SERVICE_PORT", "443")), timeouts=timeouts)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.ssl_context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.ssl_context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "scaledapi-proxy"}
        if self.token_path:
            # Read every time: projected service-account tokens are rotated by the kubelet.
            with open(self.token_path, encoding="ascii") as f:
                headers["Authorization"] = f"Bearer {f.read().strip()}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        """One request and its whole response within ``timeouts.request_s``; TimeoutError past it."""
        limit = self.timeouts.request_s
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = self._headers(content_type)
        conn = self._connection(limit)
        try:
            with _Deadline(conn, limit, f"{method} {path.split('?')[0]}"):
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
        finally:
            conn.close()

    def list_configmap(self, namespace: str, name: str) -> tuple[ConfigMapState | None, str]:
        query = urllib.parse.urlencode({"fieldSelector": f"metadata.name={name}"})
        status, body = self.request("GET", f"/api/v1/namespaces/{_q(namespace)}/configmaps?{query}")
        if status != http.HTTPStatus.OK:
            raise ApiError(status, body[:300].decode("utf-8", "replace"))
        return parse_list(body, name)

    def watch_configmap(
        self, namespace: str, name: str, resource_version: str
    ) -> Iterator[tuple[float, WatchEvent]]:
        """Yield (monotonic receive time, event) until the server ends the watch.

        ApiError on a bad status; TimeoutError after ``timeouts.read_s`` without a byte (a dead connection)
        or past ``timeouts.watch_deadline_s`` in all.
        """
        t = self.timeouts
        query = urllib.parse.urlencode(
            {
                "fieldSelector": f"metadata.name={name}",
                "watch": "1",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(t.watch_s),
            }
        )
        headers = self._headers()
        # Connect, send and every read time out after read_s; the server ends a healthy watch before that.
        conn = self._connection(t.read_s)
        try:
            with _Deadline(conn, t.watch_deadline_s, "watch"):
                conn.request("GET", f"/api/v1/namespaces/{_q(namespace)}/configmaps?{query}", headers=headers)
                resp = conn.getresponse()
                if resp.status != http.HTTPStatus.OK:
                    raise ApiError(resp.status, resp.read()[:300].decode("utf-8", "replace"))
                while True:
                    try:
                        line = resp.readline()
                    except TimeoutError as exc:
                        raise TimeoutError(f"watch silent for {t.read_s:g}s: connection dead") from exc
                    if not line:
                        return
                    received = time.monotonic()
                    event = parse_watch_line(line)
                    if event is not None:
                        yield received, event
        finally:
            conn.close()

    def merge_patch_configmap(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = f"/api/v1/namespaces/{_q(namespace)}/configmaps/{_q(name)}"
        status, body = self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")
        if status != http.HTTPStatus.OK:
            raise ApiError(status, body[:300].decode("utf-8", "replace"))


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
