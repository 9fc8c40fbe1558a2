"""gunicorn settings: ``gunicorn -c python:scaledapi_backend.gunicorn_conf scaledapi_backend.app:app``.

Environment: ``PORT`` (default 5252), ``GRACEFUL_TIMEOUT`` (seconds in-flight requests get after SIGTERM,
default 20), ``POD_NAME`` (shown in every access-log line).
"""

from __future__ import annotations

import os

from scaledapi_backend.app import instance_name

DEFAULT_PORT = 5252
DEFAULT_GRACEFUL_TIMEOUT = 20


def _int_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


port = _int_env("PORT", DEFAULT_PORT, 1, 65535)
bind = [f"0.0.0.0:{port}"]
# Threaded workers keep HTTP/1.1 connections from nginx alive; two processes suit a 2-core node.
worker_class = "gthread"
workers = 2
threads = 4
# Longer than nginx's upstream keepalive_timeout (30 s), so nginx closes idle connections, not gunicorn.
keepalive = 75
timeout = 60
# On SIGTERM gunicorn stops accepting and gives in-flight requests this long before killing the workers.
graceful_timeout = _int_env("GRACEFUL_TIMEOUT", DEFAULT_GRACEFUL_TIMEOUT, 1, 3600)
proc_name = "scaledapi-backend"
# The image's root filesystem is read-only; the heartbeat files go to memory-backed /dev/shm if there.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

accesslog = "-"
errorlog = "-"
loglevel = "info"
_instance = instance_name().replace("%", "%%")
# e.g. 10.244.0.7 - - [21/Nov/2025:05:30:00 +0000] "GET /api/hello HTTP/1.1" 200 77 instance=api-x 2ms
access_log_format = f'%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(B)s instance={_instance} %(M)sms'
