"""kube.Kube over real HTTP (a loopback server standing in for the API server), and the kopf registry."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf
import pytest

from scaledapi_operator import handlers
from scaledapi_operator.apiserver import Endpoint, Transport
from scaledapi_operator.kube import MERGE_PATCH, REQUEST_TIMEOUT_SECONDS, ApiError, Kube, error_message

Seen = list[tuple[str, str, str | None, Any]]


class FakeApi(BaseHTTPRequestHandler):
    seen: Seen
    release: threading.Event  # set at teardown: a request to /hang is answered only then

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, self.headers.get("Content-Type"), body))
        if "/hang" in self.path:
            self.release.wait(60.0)  # an API server that never answers (until the test is over)
            return  # by then the client has given up and closed the connection
        status = 200
        payload: dict[str, Any] = {"kind": "Thing", "metadata": {"name": "x"}}
        if "/missing" in self.path:
            status, payload = 404, {"kind": "Status", "code": 404}
        elif self.command == "POST" and "/exists" in self.path:
            status, payload = 409, {"kind": "Status", "code": 409}
        elif self.command == "GET" and self.path.startswith("/api/v1/namespaces/ns/pods?"):
            payload = {"items": [{"metadata": {"name": "p"}}]}
        elif "/boom" in self.path:
            status, payload = 500, {"kind": "Status", "code": 500}
        elif "/refused" in self.path:
            status, payload = (
                422,
                {
                    "kind": "Status",
                    "code": 422,
                    "reason": "Invalid",
                    "message": 'Service "9lives-backend" is invalid: metadata.name: Invalid value',
                },
            )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        return


REQUEST_TIMEOUT = 0.5


@pytest.fixture
def api() -> Iterator[tuple[Kube, Seen]]:
    seen: Seen = []
    release = threading.Event()
    handler = type("Handler", (FakeApi,), {"seen": seen, "release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    transport = Transport(Endpoint("127.0.0.1", server.server_address[1], tls=False), REQUEST_TIMEOUT)
    try:
        yield Kube(transport), seen
    finally:
        transport.close()
        release.set()
        server.shutdown()
        server.server_close()


def test_get_and_404(api: tuple[Kube, Seen]) -> None:
    kube, seen = api
    assert kube.get("Deployment", "ns", "x") == {"kind": "Thing", "metadata": {"name": "x"}}
    assert seen[-1][:2] == ("GET", "/apis/apps/v1/namespaces/ns/deployments/x")
    assert kube.get("ConfigMap", "ns", "missing") is None
    assert seen[-1][1] == "/api/v1/namespaces/ns/configmaps/missing"


def test_create_and_409(api: tuple[Kube, Seen]) -> None:
    kube, seen = api
    body = {"kind": "Service", "metadata": {"name": "x", "namespace": "ns"}}
    assert kube.create(body) is not None
    assert seen[-1] == ("POST", "/api/v1/namespaces/ns/services", "application/json", body)
    exists = {"kind": "PodDisruptionBudget", "metadata": {"name": "x", "namespace": "exists"}}
    assert kube.create(exists) is None
    assert seen[-1][1] == "/apis/policy/v1/namespaces/exists/poddisruptionbudgets"


def test_patch_uses_merge_patch_and_404(api: tuple[Kube, Seen]) -> None:
    kube, seen = api
    assert kube.patch("Role", "ns", "x", {"rules": []}) is not None
    assert seen[-1] == (
        "PATCH",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles/x",
        MERGE_PATCH,
        {"rules": []},
    )
    assert kube.patch("Role", "ns", "missing", {}) is None


def test_status_patch_goes_to_the_subresource(api: tuple[Kube, Seen]) -> None:
    kube, seen = api
    kube.patch_scaledapi_status("ns", "hello", {"replicas": 2})
    assert seen[-1] == (
        "PATCH",
        "/apis/scaledapi.dev/v1alpha1/namespaces/ns/scaledapis/hello/status",
        MERGE_PATCH,
        {"status": {"replicas": 2}},
    )


def test_delete_and_404(api: tuple[Kube, Seen]) -> None:
    kube, seen = api
    kube.delete("PodDisruptionBudget", "ns", "x", uid="u1")
    method, path, _, body = seen[-1]
    assert (method, path) == ("DELETE", "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/x")
    assert body["preconditions"] == {"uid": "u1"}
    kube.delete("PodDisruptionBudget", "ns", "missing")  # no exception


def test_list_with_selector(api: tuple[Kube, Seen]) -> None:
    kube, seen = api
    assert kube.list_objects("Pod", "ns", "a=b,c=d") == [{"metadata": {"name": "p"}}]
    assert seen[-1][1] == "/api/v1/namespaces/ns/pods?labelSelector=a%3Db%2Cc%3Dd"


def test_other_errors_raise(api: tuple[Kube, Seen]) -> None:
    kube, _ = api
    with pytest.raises(ApiError) as caught:
        kube.get("Pod", "ns", "boom")
    assert caught.value.status == 500


def test_a_refusal_carries_the_api_servers_message(api: tuple[Kube, Seen]) -> None:
    kube, _ = api
    with pytest.raises(ApiError) as caught:
        kube.create({"kind": "Service", "metadata": {"name": "x", "namespace": "refused"}})
    assert error_message(caught.value) == (
        '422 Invalid: Service "9lives-backend" is invalid: metadata.name: Invalid value'
    )
    assert error_message(ApiError(503, "Service Unavailable")) == ("503 Service Unavailable")


@pytest.mark.parametrize(
    "call",
    [
        lambda kube: kube.get("ConfigMap", "ns", "hang"),
        lambda kube: kube.patch("ConfigMap", "ns", "hang", {"data": {}}),
        lambda kube: kube.create({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "hang"}}),
        lambda kube: kube.list_objects("Pod", "hang"),
        lambda kube: kube.patch_scaledapi_status("ns", "hang", {}),
    ],
    ids=["get", "patch", "create", "list", "status"],
)
def test_a_request_the_api_server_never_answers_times_out(api: tuple[Kube, Seen], call: Any) -> None:
    kube, seen = api
    started = time.monotonic()
    with pytest.raises(OSError):
        call(kube)
    elapsed = time.monotonic() - started
    assert "hang" in seen[-1][1]
    # One deadline per blocking step: the read of the answer is the one that runs out.
    assert REQUEST_TIMEOUT * 0.9 <= elapsed < REQUEST_TIMEOUT * 2 + 2.0


def test_the_default_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALEDAPI_KUBE_API_URL", "http://127.0.0.1:8001")
    assert Kube().timeout == REQUEST_TIMEOUT_SECONDS == 10.0


def test_no_handler_needs_a_finalizer() -> None:
    """A finalizer would hang ScaledApi deletion while the operator is down: no delete handlers, no timers."""
    registry = kopf.get_default_registry()
    changing = registry._changing.get_all_handlers()
    spawning = registry._spawning.get_all_handlers()
    assert spawning == []
    assert all(not h.requires_finalizer for h in changing)
    ids = {str(h.id) for h in changing}
    assert ids == {"reconcile-on-create", "reconcile-on-update/spec", "reconcile-on-resume"}
    watched = {
        h.selector.plural or h.selector.any_name for h in registry._watching.get_all_handlers() if h.selector
    }
    assert watched == {r[-1] for r in handlers.CHILD_RESOURCES}


def test_child_success_lines_are_dropped_but_failures_and_parent_lines_kept() -> None:
    quiet = handlers.QuietChildSuccesses()

    def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)

    assert not quiet.filter(record("Handler 'child-pods' succeeded."))
    assert quiet.filter(record("Handler 'child-pods' failed with an exception. Will retry.", logging.ERROR))
    assert quiet.filter(record("Handler 'reconcile-on-create' succeeded."))
