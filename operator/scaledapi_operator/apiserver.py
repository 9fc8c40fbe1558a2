"""The operator's HTTP transport to the API server: the standard library's http.client and ssl, kept alive.

The official client was here before. kopf imports it whenever it is installed, and the two together cost
about 19 MB of resident memory before the first object is watched (kopf alone: 40 MB), over a budget of
60 MB for the whole operator. What the operator needs of it is small: one API server, a bearer token, a
CA, a deadline per request and a pool of kept-alive connections, all of which is here.

* In the pod: the service account's token (re-read when the kubelet rotates it) and CA, and the
  KUBERNETES_SERVICE_HOST / _PORT that the kubelet sets.
* Elsewhere (a developer's `kopf run`, the unit tests): SCALEDAPI_KUBE_API_URL, a plain http:// base such
  as `kubectl proxy`'s http://127.0.0.1:8001, which does the authentication itself.

Connections are kept alive and reused, so a reconcile's requests cost no TLS handshake each. A request on a
reused connection that the server had closed while it was idle fails before any answer; it is sent again
once, on a new connection (as urllib3 does). Every blocking step (connect, send, each read) times out
after `timeout` seconds, so an API server that never answers cannot hold a reconcile or its lock.
"""

from __future__ import annotations

import http.client
import os
import queue
import ssl
import urllib.parse
from dataclasses import dataclass

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
API_URL_ENV = "SCALEDAPI_KUBE_API_URL"
USER_AGENT = "scaledapi-operator"
# Idle connections kept for reuse: one per handler thread (handlers.HANDLER_THREADS) and a few for the
# fast path, the resync and the leadership loop.
POOL_SIZE = 16
# What a connection the server closed while it sat idle raises on its next request.
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass(frozen=True)
class Endpoint:
    """Where the API server is and how to prove who we are."""

    host: str
    port: int
    tls: bool = True
    ca_path: str | None = None
    token_path: str | None = None

    @classmethod
    def from_environment(cls) -> Endpoint:
        override = os.environ.get(API_URL_ENV, "").strip()
        if override:
            return cls.from_url(override)
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        if not host:
            raise ValueError(
                f"KUBERNETES_SERVICE_HOST is not set (not in a pod): set {API_URL_ENV} to an http:// API "
                "base such as `kubectl proxy`'s http://127.0.0.1:8001"
            )
        port = int(os.environ.get("KUBERNETES_SERVICE_PORT", "443"))
        return cls(host, port, ca_path=f"{SA_DIR}/ca.crt", token_path=f"{SA_DIR}/token")

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{API_URL_ENV} must be an http:// URL, got {url!r}")
        return cls(parts.hostname, parts.port or 80, tls=False)


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    body: bytes


class Transport:
    """Thread-safe: each request takes a connection of its own from the pool and gives it back after."""

    def __init__(self, endpoint: Endpoint, timeout: float, pool_size: int = POOL_SIZE) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize=pool_size)
        self._ssl: ssl.SSLContext | None = None
        if endpoint.tls:
            self._ssl = ssl.create_default_context(cafile=endpoint.ca_path)

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> Answer:
        """One request, its whole answer read. OSError (TimeoutError included) or HTTPException when the
        connection fails; any status the server gives is returned, not raised."""
        headers = self._headers(content_type)
        try:
            conn, reused = self._idle.get_nowait(), True
        except queue.Empty:
            conn, reused = self._connect(), False
        try:
            answer = self._send(conn, method, path, body, headers)
        except STALE_CONNECTION_ERRORS:
            conn.close()
            if not reused:
                raise
            conn = self._connect()
            try:
                answer = self._send(conn, method, path, body, headers)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        self._give_back(conn)
        return answer

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    def _connect(self) -> http.client.HTTPConnection:
        e = self.endpoint
        if self._ssl is not None:
            return http.client.HTTPSConnection(e.host, e.port, timeout=self.timeout, context=self._ssl)
        return http.client.HTTPConnection(e.host, e.port, timeout=self.timeout)

    @staticmethod
    def _send(
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
    ) -> Answer:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.will_close:
            conn.close()
        return Answer(response.status, response.reason, data)

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:  # the server said it closes this one
            return
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.endpoint.token_path:
            # Read on every request: the kubelet rotates projected service-account tokens in place.
            with open(self.endpoint.token_path, encoding="ascii") as token:
                headers["Authorization"] = f"Bearer {token.read().strip()}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers
