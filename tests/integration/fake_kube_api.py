"""A minimal Kubernetes API for one ConfigMap: list, watch (streamed lines, 410 on demand), merge patch.

Only what ``scaledapi_proxy.kube`` uses; plain HTTP on loopback, selected through SCALEDAPI_KUBE_API_URL.
This is a test double, used because `make test` runs without a cluster; the proxy against the real API
server (in-cluster TLS, token, RBAC, real watches) is exercised by tests/e2e on kind.

Faults on demand (``fault(kind, *modes)``, kind ``list``, ``watch`` or ``patch``, one mode per coming
request of that kind): ``500`` (an error Status), ``drop`` (connection closed without an answer), ``hang``
(a watch gets its 200 and headers, then silence; a list or patch gets nothing at all; until ``stop``,
as over a dead connection), ``trickle`` (the answer starts and goes on one byte every 0.1 s, never ending,
as from a wedged server). The status ConfigMap's data is kept with merge-patch semantics (null removes a
key).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FAULT_MODES = ("500", "drop", "hang", "trickle")


class FakeKubeApi:
    def __init__(self, namespace: str, name: str, status_name: str) -> None:
        self.namespace, self.name, self.status_name = namespace, name, status_name
        self.cond = threading.Condition()
        self.rv = 100
        self.compacted_rv = 0
        self.data: dict[str, str] | None = None
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []  # (content type, body), answered 200
        self.status_data: dict[str, str] = {}
        self.status_rv = 1
        self.lists = 0  # answered 200
        self.watches = 0  # opened (200), also those that hang
        self.attempts: Counter[str] = Counter()  # every request by kind, faulty ones too
        self.faults: dict[str, list[str]] = {"list": [], "watch": [], "patch": []}
        self.stopping = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.handle_get(self)

            def do_PATCH(self) -> None:
                api.handle_patch(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # --- state changes from the test ---------------------------------------------------------------
    def _object(self) -> dict[str, Any]:
        return {
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": str(self.rv)},
            "data": dict(self.data or {}),
        }

    def set_text(self, text: str) -> None:
        with self.cond:
            kind = "ADDED" if self.data is None else "MODIFIED"
            self.rv += 1
            self.data = {"nginx.conf": text}
            self.events.append((self.rv, {"type": kind, "object": self._object()}))
            self.cond.notify_all()

    def expire(self) -> None:
        """Open watches get ERROR 410 and older resourceVersions are refused, as after compaction."""
        with self.cond:
            self.rv += 1
            self.compacted_rv = self.rv
            status = {
                "kind": "Status",
                "code": 410,
                "reason": "Expired",
                "message": "too old resource version",
            }
            self.events.append((self.rv, {"type": "ERROR", "object": status}))
            self.cond.notify_all()

    def fault(self, kind: str, *modes: str) -> None:
        """The next requests of ``kind`` fail, one per mode, in order."""
        assert kind in self.faults, kind
        assert all(m in FAULT_MODES for m in modes), modes
        with self.cond:
            self.faults[kind].extend(modes)

    def faults_left(self, kind: str) -> int:
        with self.cond:
            return len(self.faults[kind])

    def status_reports(self, pod: str) -> list[dict[str, Any]]:
        """Every report of ``pod`` that was patched in, oldest first (removals of its key are not reports)."""
        with self.cond:
            return [
                json.loads(body["data"][pod])
                for _, body in self.patches
                if isinstance((body.get("data") or {}).get(pod), str)
            ]

    def status_value(self, pod: str) -> dict[str, Any] | None:
        """The current value of key ``pod`` in the status ConfigMap."""
        with self.cond:
            raw = self.status_data.get(pod)
        return None if raw is None else dict(json.loads(raw))

    def put_status(self, pod: str, value: dict[str, Any]) -> None:
        """A key written by someone else (another pod), as the test sets it up."""
        with self.cond:
            self.status_rv += 1
            self.status_data[pod] = json.dumps(value)

    # --- HTTP ----------------------------------------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _take_fault(self, kind: str) -> str | None:
        with self.cond:
            self.attempts[kind] += 1
            return self.faults[kind].pop(0) if self.faults[kind] else None

    def _misbehave(self, h: BaseHTTPRequestHandler, mode: str) -> None:
        """Answer as ``mode`` says (the watch's own ``hang`` is handled in ``_watch``)."""
        if mode == "500":
            self._reply(h, 500, {"kind": "Status", "code": 500, "message": "injected failure"})
        elif mode == "drop":
            h.close_connection = True  # no answer: the handler returns and the server closes the socket
        elif mode == "hang":
            self.stopping.wait()
        elif mode == "trickle":
            head = b"HTTP/1.0 200 OK\r\nX-Trickle: " + b"a" * 100_000
            for i in range(len(head)):
                if self.stopping.wait(0.1):
                    return
                try:
                    h.wfile.write(head[i : i + 1])
                    h.wfile.flush()
                except OSError:
                    return

    def handle_get(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        if url.path != f"/api/v1/namespaces/{self.namespace}/configmaps" or query.get("fieldSelector") != [
            f"metadata.name={self.name}"
        ]:
            self._reply(h, 404, {"kind": "Status", "code": 404})
            return
        kind = "watch" if query.get("watch") == ["1"] else "list"
        mode = self._take_fault(kind)
        if mode is not None and not (kind == "watch" and mode == "hang"):
            self._misbehave(h, mode)
            return
        if kind == "list":
            with self.cond:
                self.lists += 1
                items = [self._object()] if self.data is not None else []
                body = {
                    "kind": "ConfigMapList",
                    "metadata": {"resourceVersion": str(self.rv)},
                    "items": items,
                }
            self._reply(h, 200, body)
            return
        timeout_s = float(query.get("timeoutSeconds", ["60"])[0])
        self._watch(h, int(query["resourceVersion"][0]), timeout_s, hang=mode == "hang")

    def _watch(self, h: BaseHTTPRequestHandler, since: int, timeout_s: float, *, hang: bool = False) -> None:
        with self.cond:
            if since < self.compacted_rv:
                self._reply(h, 410, {"kind": "Status", "code": 410, "reason": "Expired"})
                return
            self.watches += 1
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()
        h.wfile.flush()
        if hang:  # open, then never a byte again, beyond timeoutSeconds: a dead connection
            self.stopping.wait()
            return
        sent = since
        waited = 0.0
        while not self.stopping.is_set() and waited < timeout_s:
            with self.cond:
                pending = [(rv, ev) for rv, ev in self.events if rv > sent]
                if not pending:
                    self.cond.wait(0.2)
                    waited += 0.2
                    continue
            for rv, ev in pending:
                try:
                    h.wfile.write(json.dumps(ev).encode() + b"\n")
                    h.wfile.flush()
                except OSError:
                    return
                sent = rv
                if ev["type"] == "ERROR":
                    return

    def handle_patch(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        length = int(h.headers.get("Content-Length", "0"))
        body = json.loads(h.rfile.read(length))
        if url.path != f"/api/v1/namespaces/{self.namespace}/configmaps/{self.status_name}":
            self._reply(h, 404, {"kind": "Status", "code": 404})
            return
        mode = self._take_fault("patch")
        if mode is not None:
            self._misbehave(h, mode)
            return
        with self.cond:
            self._merge_status(h, body)
            answer = {
                "kind": "ConfigMap",
                "metadata": {"name": self.status_name, "resourceVersion": str(self.status_rv)},
                "data": dict(self.status_data),
            }
        self._reply(h, 200, answer)

    def _merge_status(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """JSON merge patch of the status ConfigMap's data (call with cond held)."""
        for key, value in (body.get("data") or {}).items():
            if value is None:
                self.status_data.pop(key, None)
            else:
                self.status_data[key] = value
        self.status_rv += 1
        self.patches.append((h.headers.get("Content-Type", ""), body))
        self.cond.notify_all()
