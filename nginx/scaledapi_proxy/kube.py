"""The reloader's only API I/O: list and watch one ConfigMap, merge-patch another (http.client + ssl)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from scaledapi_proxy.watch import ConfigMapState, WatchEvent, parse_list, parse_watch_line

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
REQUEST_TIMEOUT_S = 10.0
# Test hook only: a plain-http API base URL (e.g. http://127.0.0.1:8001) instead of the in-cluster one.
API_URL_ENV = "SCALEDAPI_KUBE_API_URL"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class KubeClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool = True,
        token_path: str | None = f"{SA_DIR}/token",
        ca_path: str | None = f"{SA_DIR}/ca.crt",
    ) -> None:
        self.host = host
        self.port = port
        self.token_path = token_path
        self.ssl_context: ssl.SSLContext | None = None
        if tls:
            self.ssl_context = ssl.create_default_context(cafile=ca_path)

    @classmethod
    def from_environment(cls) -> KubeClient:
        override = os.environ.get(API_URL_ENV, "").strip()
        if override:
            url = urllib.parse.urlsplit(override)
            if url.scheme != "http" or not url.hostname:
                raise ValueError(f"{API_URL_ENV} must be an http:// URL, got {override!r}")
            return cls(url.hostname, url.port or 80, tls=False, token_path=None, ca_path=None)
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        if not host:
            raise ValueError("KUBERNETES_SERVICE_HOST is not set: not running in a pod?")
        return cls(host, int(os.environ.get("KUBERNETES_SERVICE_PORT", "443")))

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
        conn = self._connection(REQUEST_TIMEOUT_S)
        try:
            payload = None if body is None else json.dumps(body).encode("utf-8")
            conn.request(method, path, body=payload, headers=self._headers(content_type))
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
        self, namespace: str, name: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[tuple[float, WatchEvent]]:
        """Yield (monotonic receive time, event) until the server ends the watch; ApiError on a bad status."""
        query = urllib.parse.urlencode(
            {
                "fieldSelector": f"metadata.name={name}",
                "watch": "1",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(timeout_seconds),
            }
        )
        # The socket timeout covers a silently dead connection; the server ends the watch before it.
        conn = self._connection(timeout_seconds + 30)
        try:
            conn.request(
                "GET", f"/api/v1/namespaces/{_q(namespace)}/configmaps?{query}", headers=self._headers()
            )
            resp = conn.getresponse()
            if resp.status != http.HTTPStatus.OK:
                raise ApiError(resp.status, resp.read()[:300].decode("utf-8", "replace"))
            while True:
                line = resp.readline()
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
