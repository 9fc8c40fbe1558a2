"""The process: start nginx with the first good config, follow the ConfigMap, report, stop gracefully.

Threads: the main thread runs nginx as a child and waits for it; a daemon "watch" thread lists and watches
the ConfigMap and hands every text it sees to a daemon "sync" thread, which applies the newest one, reports
the result and retries what failed (``sync.Syncer``). SIGTERM (also SIGINT, SIGQUIT) becomes SIGQUIT for
nginx, a graceful stop, and the sync thread removes the pod's key from the status ConfigMap; the process
exits with nginx. When nginx dies on its own, the exit code is non-zero, so the kubelet restarts the
container.

The watch: list, then watch from the list's resourceVersion. A watch the server ends (after
``Timeouts.watch_s``) is opened again from the last resourceVersion; after 410 Gone, or any error (a
refused request, a dead connection noticed after ``Timeouts.read_s`` of silence, an unreadable line), the
ConfigMap is listed again, after a backoff except for 410.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from scaledapi_proxy.applier import APPLIED, ApplyResult, NginxApplier, config_hash, nginx_run_command
from scaledapi_proxy.kube import HTTP_GONE, REQUEST_ERRORS, ApiError, KubeClient
from scaledapi_proxy.metrics import STUB_STATUS_SOCKET, ProxyMetrics, read_stub_status, serve
from scaledapi_proxy.sync import BACKOFF_MAX_S, BACKOFF_MIN_S, WITHDRAW_DEADLINE_S, Backoff, Syncer
from scaledapi_proxy.watch import ConfigMapState
from scaledapi_proxy.zero import (
    ACTIVATOR_SOCKET,
    ACTIVITY_SOCKET,
    Activator,
    Activity,
    ScaleToZero,
    Upstream,
    servers_of,
    settings_of,
)

log = logging.getLogger("scaledapi_proxy")

DEFAULT_CONF_PATH = "/tmp/nginx/nginx.conf"  # noqa: S108 - an emptyDir in the pod
MIN_HEALTHY_WATCH_S = 1.0  # a watch that ends sooner without an event counts as a failure (backoff)
IDLE_TICK_S = 0.25  # how often the idle clock compares the last request with the idle time
# The activator's limits while no config enables scale to zero (nginx then sends it nothing).
DEFAULT_ZERO = ScaleToZero(idle_seconds=0, wake_timeout_seconds=0)


@dataclass(frozen=True)
class Tuning:
    """Timings of the reloader besides the API timeouts (kube.Timeouts); tests shorten them."""

    check_timeout_s: float = 30.0  # nginx -t
    backoff_min_s: float = BACKOFF_MIN_S
    backoff_max_s: float = BACKOFF_MAX_S
    withdraw_deadline_s: float = WITHDRAW_DEADLINE_S


@dataclass(frozen=True)
class Settings:
    pod_name: str
    namespace: str
    configmap: str
    status_configmap: str
    conf_path: str
    nginx_bin: str = "nginx"
    metrics_port: int | None = None  # GET /metrics there (metrics.py); None: no metrics server

    @classmethod
    def from_environment(cls) -> Settings:
        missing = [
            k
            for k in ("POD_NAME", "POD_NAMESPACE", "SCALEDAPI_CONFIGMAP", "SCALEDAPI_STATUS_CONFIGMAP")
            if not os.environ.get(k, "").strip()
        ]
        if missing:
            raise ValueError(f"missing environment: {', '.join(missing)}")
        return cls(
            pod_name=os.environ["POD_NAME"].strip(),
            namespace=os.environ["POD_NAMESPACE"].strip(),
            configmap=os.environ["SCALEDAPI_CONFIGMAP"].strip(),
            status_configmap=os.environ["SCALEDAPI_STATUS_CONFIGMAP"].strip(),
            conf_path=os.environ.get("NGINX_CONF_PATH", "").strip() or DEFAULT_CONF_PATH,
            metrics_port=metrics_port_of(os.environ.get("SCALEDAPI_METRICS_PORT", "")),
        )


def metrics_port_of(text: str) -> int | None:
    """SCALEDAPI_METRICS_PORT: a port, or empty / 0 for no metrics server; anything else is an error."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"SCALEDAPI_METRICS_PORT must be a port number (0 turns metrics off), got {text!r}")
    return int(text) or None


class Reloader:
    def __init__(self, settings: Settings, client: KubeClient, tuning: Tuning = Tuning()) -> None:  # noqa: B008
        self.settings = settings
        self.client = client
        self.tuning = tuning
        self.applier = NginxApplier(
            settings.conf_path,
            nginx_bin=settings.nginx_bin,
            master_pid=self._master_pid,
            check_timeout_s=tuning.check_timeout_s,
        )
        self.syncer = Syncer(
            settings.pod_name,
            self.applier,
            self._patch_status,
            on_result=self._on_result,
            backoff_min_s=tuning.backoff_min_s,
            backoff_max_s=tuning.backoff_max_s,
            withdraw_deadline_s=tuning.withdraw_deadline_s,
        )
        # Scale to zero (zero.py): the last request, the servers for held requests, the settings in force.
        self.activity = Activity()
        self.activity.listeners.append(self._request_seen)
        self.upstream = Upstream()
        self.zero = settings_of("")
        runtime = os.path.dirname(settings.conf_path) or "."
        self.activity_socket = os.path.join(runtime, ACTIVITY_SOCKET)
        status_socket = os.path.join(runtime, STUB_STATUS_SOCKET)
        self.metrics = ProxyMetrics(
            stub_status=lambda: read_stub_status(status_socket), holding=lambda: self.activator.holding
        )
        self.activity.datagram_listeners.append(self.metrics.record_log)
        self.activator = Activator(
            os.path.join(runtime, ACTIVATOR_SOCKET),
            self.activity,
            self.upstream,
            lambda: float(self.zero.wake_timeout_seconds) if self.zero is not None else 0.0,
            forwarded=self.metrics.record_forward,
            max_held=lambda: (self.zero or DEFAULT_ZERO).max_held_requests,
            max_body_bytes=lambda: (self.zero or DEFAULT_ZERO).max_held_body_bytes,
        )
        self.offered: dict[str, list[str]] = {}  # config hash -> its servers, for the metrics
        self.nginx: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.wake = threading.Event()  # nginx started, or a stop was asked for
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    # --- nginx process -------------------------------------------------------------------------------
    def _master_pid(self) -> int | None:
        proc = self.nginx
        return proc.pid if proc is not None and proc.poll() is None else None

    def _start_nginx(self) -> None:
        with self.lock:
            if self.stopping.is_set() or self.nginx is not None:
                return
            cmd = nginx_run_command(self.settings.nginx_bin, self.settings.conf_path)
            self.nginx = subprocess.Popen(cmd)  # stdout/stderr: the container's log
            log.info("event=nginx-started pid=%d cmd=%r", self.nginx.pid, cmd)
        self.wake.set()

    def handle_signal(self, signum: int, _frame: FrameType | None) -> None:
        with self.lock:
            first = not self.stopping.is_set()
            self.stopping.set()
            proc = self.nginx
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)  # graceful: finish open requests, then exit
        if first:
            log.info("event=stop signal=%s nginx_pid=%s", signal.Signals(signum).name, proc and proc.pid)
        self.wake.set()

    # --- config and report ---------------------------------------------------------------------------
    def _on_result(self, result: ApplyResult) -> None:
        reload_s = result.reload_ms / 1000 if result.reloaded else None
        self.metrics.config_applied(result.state, reload_s, self.offered.get(result.hash, []))
        if result.state == APPLIED and not result.reloaded:
            self._start_nginx()

    def _patch_status(self, patch: dict[str, Any]) -> None:
        self.client.merge_patch_configmap(self.settings.namespace, self.settings.status_configmap, patch)

    # --- scale to zero ------------------------------------------------------------------------------
    def _offer(self, configmap: ConfigMapState, received: float, source: str) -> None:
        """A ConfigMap text for nginx; its servers are also where held requests go, at once."""
        if configmap.text is not None:
            self.zero = settings_of(configmap.text)
            self.upstream.offer(configmap.text)
            servers = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in servers_of(configmap.text)]
            self.offered = {config_hash(configmap.text): servers}  # only the newest can be applied next
        self.syncer.offer(configmap, received, source)

    def _request_seen(self) -> None:
        if self.zero is not None:
            self.syncer.set_idle(False)

    def _receive_activity(self) -> None:
        self.activity.receive(self.activity_socket, self.stopping)

    def _optional(self, name: str, target: Callable[[], None]) -> None:
        """Scale to zero's and the metrics' threads: without them nginx still serves, so a failure
        stops only them."""
        try:
            target()
        except OSError as exc:
            log.error("event=thread-failed thread=%s error=%r; nginx serves on without it", name, exc)

    def idle_loop(self) -> None:
        while not self.stopping.wait(IDLE_TICK_S):
            zero = self.zero
            self.syncer.set_idle(None if zero is None else self.activity.idle_for() >= zero.idle_seconds)

    # --- watch ---------------------------------------------------------------------------------------
    def watch_loop(self) -> None:
        rv: str | None = None
        backoff = Backoff(self.tuning.backoff_min_s, self.tuning.backoff_max_s)
        while not self.stopping.is_set():
            try:
                if rv is None:
                    rv = self._list()
                rv, healthy = self._follow(rv)
                if healthy:
                    backoff.reset()  # the server ended the watch (timeoutSeconds): watch again from rv
                    continue
                log.warning("event=watch-ended-at-once rv=%s", rv)
            except REQUEST_ERRORS as exc:
                if isinstance(exc, ApiError) and exc.status == HTTP_GONE:
                    log.info("event=watch-expired rv=%s; listing again", rv)
                    rv = None
                    continue
                log.warning("event=watch-error error=%r; listing again", exc)
                rv = None  # whatever was lost with the connection, the list has it
            delay = backoff.next()
            log.info("event=watch-backoff retry_in_s=%.1f", delay)
            self.stopping.wait(delay)

    def _list(self) -> str:
        s = self.settings
        cm, rv = self.client.list_configmap(s.namespace, s.configmap)
        log.info("event=listed rv=%s found=%s", rv, cm is not None)
        if cm is None:
            log.warning("event=configmap-missing name=%s source=list", s.configmap)
        else:
            self._offer(cm, time.monotonic(), "list")
        return rv

    def _follow(self, rv: str) -> tuple[str, bool]:
        """One watch from ``rv`` until the server ends it: (the last resourceVersion, whether it was healthy).

        Healthy: it delivered an event or lasted MIN_HEALTHY_WATCH_S; a watch that ends at once is retried
        after a backoff, not in a tight loop.
        """
        s = self.settings
        opened = time.monotonic()
        events = 0
        for received, event in self.client.watch_configmap(s.namespace, s.configmap, rv):
            if self.stopping.is_set():
                break
            events += 1
            if event.type == "ERROR":
                raise ApiError(event.error_code or 500, event.error_message)
            if event.resource_version:
                rv = event.resource_version
            if event.type in ("ADDED", "MODIFIED") and event.configmap is not None:
                self._offer(event.configmap, received, "watch")
            elif event.type == "DELETED":
                log.warning("event=configmap-deleted rv=%s; nginx keeps its config", rv)
        return rv, bool(events) or time.monotonic() - opened >= MIN_HEALTHY_WATCH_S

    def _metrics_thread(self) -> list[tuple[str, Callable[[], None]]]:
        port = self.settings.metrics_port
        if port is None:
            return []
        # Without the metrics server nginx still serves: a failure to bind stops only it.
        return [
            ("metrics", lambda: self._optional("metrics", lambda: serve(self.metrics, port, self.stopping)))
        ]

    def _thread_main(self, name: str, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception:
            log.exception("event=thread-crashed thread=%s", name)
            self.handle_signal(signal.SIGTERM, None)  # no watcher or no applier: let the kubelet restart us

    # --- main ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watch and sync threads (``run`` does; tests call it without signal handlers)."""
        os.makedirs(os.path.dirname(self.settings.conf_path) or ".", exist_ok=True)
        threads: tuple[tuple[str, Callable[[], None]], ...] = (
            ("watch", self.watch_loop),
            ("sync", lambda: self.syncer.run(self.stopping)),
            ("activity", lambda: self._optional("activity", self._receive_activity)),
            ("activator", lambda: self._optional("activator", lambda: self.activator.serve(self.stopping))),
            ("idle", self.idle_loop),
            *self._metrics_thread(),
        )
        for name, target in threads:
            thread = threading.Thread(target=self._thread_main, args=(name, target), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def join_sync(self) -> None:
        """After a stop: wait until the sync thread has removed the pod's key (bounded)."""
        for thread in self.threads:
            if thread.name == "sync":
                thread.join(self.tuning.withdraw_deadline_s + self.client.timeouts.request_s + 1)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self.handle_signal)
        self.start()
        while not self.wake.wait(1.0):
            pass
        proc = self.nginx
        if proc is None:
            self.join_sync()
            log.info("event=exit reason=stopped before nginx started")
            return 0
        rc = proc.wait()
        if self.stopping.is_set():
            self.join_sync()
            log.info("event=exit nginx_rc=%d", rc)
            return rc
        log.error("event=nginx-died rc=%d; exiting so the kubelet restarts the container", rc)
        return rc or 1


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s scaledapi-proxy %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = Settings.from_environment()
        client = KubeClient.from_environment()
    except (ValueError, OSError) as exc:
        log.error("event=bad-environment error=%s", exc)
        return 2
    return Reloader(settings, client).run()
