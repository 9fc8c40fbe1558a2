"""The Flask application.

Environment: ``GREETING`` (default ``Hello``), ``POD_NAME`` (the instance; falls back to the hostname).
``PORT`` and ``GRACEFUL_TIMEOUT`` are read by the gunicorn config.

``POST /api/echo`` answers the length of the body it was sent (and the instance): a POST for the tests.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from flask import Flask, Response, jsonify, request

DEFAULT_GREETING = "Hello"
# /api/work burns CPU for ?ms= milliseconds (a load an HPA on CPU can see); bounded so that one request
# cannot hold a worker for long.
WORK_DEFAULT_MS = 20
WORK_MAX_MS = 1000
ECHO_CHUNK = 64 * 1024  # POST /api/echo reads the body in pieces of this size


def burn_cpu(ms: int) -> int:
    """Spin for ``ms`` milliseconds of this thread's CPU time; return the loop count (keeps it real)."""
    end = time.thread_time() + ms / 1000
    count = 0
    while time.thread_time() < end:
        count += 1
    return count


def instance_name(environ: Mapping[str, str] | None = None) -> str:
    """The pod name from ``POD_NAME``, or the hostname when it is unset or empty."""
    env = os.environ if environ is None else environ
    return env.get("POD_NAME", "").strip() or socket.gethostname()


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app; ``environ`` defaults to the process environment (tests pass their own)."""
    env = os.environ if environ is None else environ
    greeting = env.get("GREETING", DEFAULT_GREETING)
    instance = instance_name(env)

    app = Flask("scaledapi_backend")
    app.config["INSTANCE"] = instance
    app.config["GREETING"] = greeting

    @app.get("/api/hello")
    def hello() -> Response:
        return jsonify(greeting=greeting, message=f"{greeting} from {instance}", instance=instance)

    @app.get("/api/work")
    def work() -> Response | tuple[Response, int]:
        raw = request.args.get("ms", str(WORK_DEFAULT_MS))
        ms = int(raw) if raw.isdigit() else -1
        if not 0 <= ms <= WORK_MAX_MS:
            return jsonify(error=f"ms must be an integer 0..{WORK_MAX_MS}"), 400
        burn_cpu(ms)
        return jsonify(instance=instance, ms=ms)

    @app.post("/api/echo")
    def echo() -> Response:
        # The body's length, counted as it is read (never held whole): a POST for the proxy's tests.
        length = sum(len(chunk) for chunk in iter(lambda: request.stream.read(ECHO_CHUNK), b""))
        return jsonify(instance=instance, bytes=length)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", instance=instance)

    return app


app = create_app()
