"""Helpers shared by the integration tests: polling with a deadline, free ports, process handles."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, render_nginx_conf
from scaledapi_proxy.applier import ApplyResult, NginxApplier
from scaledapi_proxy.zero import ACTIVATOR_SOCKET, ACTIVITY_SOCKET, Activator, Activity, ScaleToZero, Upstream
from tests.integration.fake_kube_api import FakeKubeApi


def wait_for(predicate: Callable[[], bool], deadline_s: float, what: str, interval_s: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s:g}s waiting for {what}")
        time.sleep(interval_s)  # poll interval, bounded by the deadline above


def let_workers_reach(runtime: Path) -> None:
    """nginx started as root runs its workers as nobody, who must reach the reloader's sockets in
    ``runtime``: pytest makes its directories 0700 (in the pod everything runs as one uid)."""
    for directory in [runtime, *runtime.parents]:
        if directory == Path("/tmp"):  # noqa: S108
            break
        directory.chmod(0o755)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Backend:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Nginx:
    settings: NginxSettings
    conf_path: Path
    proc: subprocess.Popen[bytes]
    access_log: Path
    error_log: Path
    applier: NginxApplier
    results: list[ApplyResult] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.listen_port}"

    def render(self, endpoints: Sequence[Endpoint]) -> str:
        return render_nginx_conf(self.settings, endpoints)

    def apply(self, endpoints: Sequence[Endpoint]) -> ApplyResult:
        result = self.applier.apply(self.render(endpoints))
        self.results.append(result)
        return result


def hello(base_url: str, timeout_s: float = 5.0) -> str:
    """One GET /api/hello on a fresh connection; the instance that answered."""
    resp = requests.get(f"{base_url}/api/hello", timeout=timeout_s, headers={"Connection": "close"})
    resp.raise_for_status()
    instance = resp.json()["instance"]
    assert isinstance(instance, str)
    return instance


PROXY_POD = "demo-proxy-7f9c-abcde"


@dataclass
class ProxyRun:
    api: FakeKubeApi
    proc: subprocess.Popen[bytes]
    settings: NginxSettings
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.listen_port}"

    def render(self, endpoints: list[Endpoint]) -> str:
        return render_nginx_conf(self.settings, endpoints)

    def report_for(self, digest: str) -> dict[str, Any] | None:
        return next((r for r in reversed(self.api.status_reports(PROXY_POD)) if r["hash"] == digest), None)

    def log(self) -> str:
        return self.log_path.read_text()


class ScaleToZeroThreads:
    """The activity and activator threads of scaledapi_proxy.main.Reloader, run on their own on an nginx
    runtime dir with ``zero``'s settings: ``woken`` is set by the first request seen, ``forwarded`` lists
    the status of each held request the activator forwarded."""

    def __init__(self, runtime: Path, zero: ScaleToZero) -> None:
        self.zero = zero
        self.stopping = threading.Event()
        self.activity = Activity()
        self.woken = threading.Event()
        self.activity.listeners.append(self.woken.set)
        self.upstream = Upstream()
        self.forwarded: list[int] = []
        self.activator = Activator(
            str(runtime / ACTIVATOR_SOCKET),
            self.activity,
            self.upstream,
            lambda: zero.wake_timeout_seconds,
            lambda _host, _port, status, _seconds: self.forwarded.append(status),
            max_held=lambda: zero.max_held_requests,
            max_body_bytes=lambda: zero.max_held_body_bytes,
        )
        for target in (
            lambda: self.activity.receive(str(runtime / ACTIVITY_SOCKET), self.stopping),
            lambda: self.activator.serve(self.stopping),
        ):
            threading.Thread(target=target, daemon=True).start()
        wait_for(lambda: self.activator.server is not None, 5, "the activator to listen")
        wait_for(lambda: (runtime / ACTIVATOR_SOCKET).exists(), 5, "the activator's socket")
        wait_for(lambda: (runtime / ACTIVITY_SOCKET).exists(), 5, "the activity socket")

    def wake(self, *backends: Backend) -> None:
        """Hand the activator a config with these backends, as a config with ready copies would come."""
        endpoints = [b.endpoint for b in backends]
        self.upstream.offer(render_nginx_conf(NginxSettings(scale_to_zero=self.zero), endpoints))
