"""The Flask application.

Environment: ``GREETING`` (default ``Hello``), ``POD_NAME`` (the instance; falls back to the hostname).
``PORT`` and ``GRACEFUL_TIMEOUT`` are read by the gunicorn config.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from flask import Flask, Response, jsonify

DEFAULT_GREETING = "Hello"


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

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", instance=instance)

    return app


app = create_app()
