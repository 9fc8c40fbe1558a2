"""The process: start nginx with the first good config, follow the ConfigMap, report, stop gracefully.

Threads: the main thread runs nginx as a child and waits for it; a daemon thread lists and watches the
ConfigMap and applies every changed text. SIGTERM (also SIGINT, SIGQUIT) becomes SIGQUIT for nginx, a
graceful stop; the process exits with nginx. When nginx dies on its own, the exit code is non-zero, so the
kubelet restarts the container.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from scaledapi_proxy.applier import (
    APPLIED,
    REJECTED,
    ApplyResult,
    NginxApplier,
    config_hash,
    nginx_run_command,
)
from scaledapi_proxy.kube import ApiError, KubeClient
from scaledapi_proxy.report import report_patch
from scaledapi_proxy.watch import CONF_KEY, ConfigMapState

log = logging.getLogger("scaledapi_proxy")

DEFAULT_CONF_PATH = "/tmp/nginx/nginx.conf"  # noqa: S108 - an emptyDir in the pod
WATCH_TIMEOUT_S = 240
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
HTTP_GONE = 410


@dataclass(frozen=True)
class Settings:
    pod_name: str
    namespace: str
    configmap: str
    status_configmap: str
    conf_path: str
    nginx_bin: str = "nginx"

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
        )


class Reloader:
    def __init__(self, settings: Settings, client: KubeClient) -> None:
        self.settings = settings
        self.client = client
        self.applier = NginxApplier(
            settings.conf_path, nginx_bin=settings.nginx_bin, master_pid=self._master_pid
        )
        self.nginx: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.wake = threading.Event()  # nginx started, or a stop was asked for
        self.lock = threading.Lock()
        self.pending_report: dict[str, Any] | None = None

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

    # --- config --------------------------------------------------------------------------------------
    def on_configmap(self, cm: ConfigMapState | None, received: float, source: str) -> None:
        if cm is None:
            log.warning("event=configmap-missing name=%s source=%s", self.settings.configmap, source)
            return
        text = cm.text
        if text is None:
            marker = f"missing-key:{cm.resource_version}"
            if self.applier.last_hash != marker:
                self.applier.last_hash = marker
                log.warning("event=rejected rv=%s reason=no key %s", cm.resource_version, CONF_KEY)
                self._report(config_hash(""), REJECTED, f"ConfigMap has no key {CONF_KEY}")
            return
        if not self.applier.needs_apply(text):
            log.debug("event=unchanged rv=%s hash=%s", cm.resource_version, config_hash(text))
            return
        result = self.applier.apply(text)
        if result.state == APPLIED and not result.reloaded:
            self._start_nginx()
        self._log_result(result, cm.resource_version, received, source)
        self._report(result.hash, result.state, result.message)

    def _log_result(self, result: ApplyResult, rv: str, received: float, source: str) -> None:
        since_event_ms = (time.monotonic() - received) * 1000
        line = (
            "event=%s source=%s rv=%s hash=%s check_ms=%.1f reload_ms=%.1f apply_ms=%.1f "
            "event_to_done_ms=%.1f message=%r"
        )
        args = (
            result.state.lower(),
            source,
            rv,
            result.hash,
            result.check_ms,
            result.reload_ms,
            result.total_ms,
            since_event_ms,
            result.message,
        )
        if result.state == APPLIED:
            log.info(line, *args)
        else:
            log.warning(line, *args)

    # --- report --------------------------------------------------------------------------------------
    def _report(self, digest: str, state: str, message: str) -> None:
        self.pending_report = report_patch(
            self.settings.pod_name, digest, state, message, dt.datetime.now(dt.UTC)
        )
        self.flush_report()

    def flush_report(self) -> None:
        patch = self.pending_report
        if patch is None:
            return
        try:
            self.client.merge_patch_configmap(self.settings.namespace, self.settings.status_configmap, patch)
        except (ApiError, OSError, http.client.HTTPException) as exc:
            # Kept and sent again at the next watch (re)connect or event.
            log.warning("event=report-failed configmap=%s error=%s", self.settings.status_configmap, exc)
            return
        if self.pending_report is patch:
            self.pending_report = None
        log.info("event=reported configmap=%s", self.settings.status_configmap)

    # --- watch ---------------------------------------------------------------------------------------
    def watch_loop(self) -> None:
        s = self.settings
        rv: str | None = None
        backoff = BACKOFF_MIN_S
        while not self.stopping.is_set():
            try:
                self.flush_report()
                if rv is None:
                    cm, rv = self.client.list_configmap(s.namespace, s.configmap)
                    log.info("event=listed rv=%s found=%s", rv, cm is not None)
                    self.on_configmap(cm, time.monotonic(), "list")
                for received, event in self.client.watch_configmap(
                    s.namespace, s.configmap, rv, WATCH_TIMEOUT_S
                ):
                    if self.stopping.is_set():
                        return
                    if event.type == "ERROR":
                        raise ApiError(event.error_code or 500, event.error_message)
                    if event.resource_version:
                        rv = event.resource_version
                    if event.type in ("ADDED", "MODIFIED"):
                        self.on_configmap(event.configmap, received, "watch")
                    elif event.type == "DELETED":
                        log.warning("event=configmap-deleted rv=%s; nginx keeps its config", rv)
                    self.flush_report()
                backoff = BACKOFF_MIN_S  # the server ended the watch (timeoutSeconds): watch again from rv
            except (ApiError, OSError, http.client.HTTPException, ValueError) as exc:
                if isinstance(exc, ApiError) and exc.status == HTTP_GONE:
                    log.info("event=watch-expired rv=%s; listing again", rv)
                    rv = None
                    continue
                log.warning("event=watch-error error=%r retry_in_s=%.1f", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _watch_thread_main(self) -> None:
        try:
            self.watch_loop()
        except Exception:
            log.exception("event=watch-thread-crashed")
            self.handle_signal(signal.SIGTERM, None)  # no watcher, no updates: let the kubelet restart us

    # --- main ----------------------------------------------------------------------------------------
    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(signum, self.handle_signal)
        os.makedirs(os.path.dirname(self.settings.conf_path) or ".", exist_ok=True)
        threading.Thread(target=self._watch_thread_main, name="watch", daemon=True).start()
        while not self.wake.wait(1.0):
            pass
        proc = self.nginx
        if proc is None:
            log.info("event=exit reason=stopped before nginx started")
            return 0
        rc = proc.wait()
        if self.stopping.is_set():
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
