"""apiserver.Transport over real loopback HTTP servers: connections kept alive, stale ones replaced, the
token read on every request, and where the API server is found."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scaledapi_operator.apiserver import API_URL_ENV, SA_DIR, Endpoint, Transport


class Counting(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; counts connections and records each request's Authorization."""

    protocol_version = "HTTP/1.1"
    connections: list[int]
    authorizations: list[str | None]
    one_request_per_connection = False  # then drop the connection silently, as an idle timeout does

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_GET(self) -> None:
        self.authorizations.append(self.headers.get("Authorization"))
        data = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.one_request_per_connection:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return


Server = tuple[Transport, list[int], list[str | None]]


def serve(tmp_path: Path, **options: Any) -> Iterator[Server]:
    connections: list[int] = []
    authorizations: list[str | None] = []
    handler = type(
        "Handler", (Counting,), {"connections": connections, "authorizations": authorizations, **options}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("first\n")
    endpoint = Endpoint("127.0.0.1", server.server_address[1], tls=False, token_path=str(token))
    transport = Transport(endpoint, timeout=2.0)
    try:
        yield transport, connections, authorizations
    finally:
        transport.close()
        server.shutdown()
        server.server_close()


@pytest.fixture
def keep_alive(tmp_path: Path) -> Iterator[Server]:
    yield from serve(tmp_path)


@pytest.fixture
def drops_idle(tmp_path: Path) -> Iterator[Server]:
    yield from serve(tmp_path, one_request_per_connection=True)


def test_sequential_requests_share_one_connection(keep_alive: Server) -> None:
    transport, connections, _ = keep_alive
    for _ in range(5):
        answer = transport.request("GET", "/api/v1/pods")
        assert (answer.status, answer.body) == (200, b'{"ok": true}')
    assert len(connections) == 1


def test_a_connection_the_server_dropped_while_idle_is_replaced(drops_idle: Server) -> None:
    transport, connections, _ = drops_idle
    for _ in range(3):
        assert transport.request("GET", "/api/v1/pods").status == 200
    assert len(connections) == 3


def test_the_token_is_read_on_every_request(keep_alive: Server, tmp_path: Path) -> None:
    transport, _, authorizations = keep_alive
    transport.request("GET", "/a")
    (tmp_path / "token").write_text("rotated\n")
    transport.request("GET", "/b")
    assert authorizations == ["Bearer first", "Bearer rotated"]


def test_a_new_connection_that_fails_is_raised_not_retried() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[int] = []

    def hang_up() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the test closed the listener
                return
            accepted.append(1)
            conn.recv(65536)
            conn.close()  # no answer at all

    threading.Thread(target=hang_up, daemon=True).start()
    transport = Transport(Endpoint("127.0.0.1", listener.getsockname()[1], tls=False), timeout=2.0)
    with pytest.raises(OSError):
        transport.request("GET", "/api/v1/pods")
    listener.close()
    assert accepted == [1]


def test_in_a_pod_the_service_account_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_URL_ENV, raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert Endpoint.from_environment() == Endpoint(
        "10.96.0.1", 443, tls=True, ca_path=f"{SA_DIR}/ca.crt", token_path=f"{SA_DIR}/token"
    )


def test_elsewhere_the_url_override_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_URL_ENV, "http://127.0.0.1:8001")
    assert Endpoint.from_environment() == Endpoint("127.0.0.1", 8001, tls=False)


@pytest.mark.parametrize(
    ("url", "host", "words"),
    [
        ("", None, "KUBERNETES_SERVICE_HOST is not set"),
        ("https://127.0.0.1:6443", "10.96.0.1", "must be an http:// URL"),
    ],
)
def test_no_api_server_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, url: str, host: str | None, words: str
) -> None:
    monkeypatch.setenv(API_URL_ENV, url)
    if host is None:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    else:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    with pytest.raises(ValueError, match=words) as caught:
        Endpoint.from_environment()
    assert API_URL_ENV in str(caught.value)
