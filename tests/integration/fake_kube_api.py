"""A minimal Kubernetes API for one ConfigMap: list, watch (streamed lines, 410 on demand), merge patch.

Only what ``scaledapi_proxy.kube`` uses; plain HTTP on loopback, selected through SCALEDAPI_KUBE_API_URL.
This is a test double, used because `make test` runs without a cluster; the proxy against the real API
server (in-cluster TLS, token, RBAC, real watches) is exercised by tests/e2e on kind.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class FakeKubeApi:
    def __init__(self, namespace: str, name: str, status_name: str) -> None:
        self.namespace, self.name, self.status_name = namespace, name, status_name
        self.cond = threading.Condition()
        self.rv = 100
        self.compacted_rv = 0
        self.data: dict[str, str] | None = None
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []  # (content type, body)
        self.lists = 0
        self.watches = 0
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

    def status_reports(self, pod: str) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(body["data"][pod]) for _, body in self.patches if pod in body.get("data", {})]

    # --- HTTP ----------------------------------------------------------------------------------------
    def _reply(self, h: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def handle_get(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        if url.path != f"/api/v1/namespaces/{self.namespace}/configmaps" or query.get("fieldSelector") != [
            f"metadata.name={self.name}"
        ]:
            self._reply(h, 404, {"kind": "Status", "code": 404})
            return
        if query.get("watch") != ["1"]:
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
        self._watch(h, int(query["resourceVersion"][0]), float(query.get("timeoutSeconds", ["60"])[0]))

    def _watch(self, h: BaseHTTPRequestHandler, since: int, timeout_s: float) -> None:
        with self.cond:
            self.watches += 1
            if since < self.compacted_rv:
                self._reply(h, 410, {"kind": "Status", "code": 410, "reason": "Expired"})
                return
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.end_headers()
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
        with self.cond:
            self.patches.append((h.headers.get("Content-Type", ""), body))
            self.cond.notify_all()
        self._reply(h, 200, {"kind": "ConfigMap"})
