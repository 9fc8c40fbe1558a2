"""The Flask app through its test client, and the gunicorn settings."""

from __future__ import annotations

import importlib
import socket
import time

import pytest

from scaledapi_backend import gunicorn_conf
from scaledapi_backend.app import WORK_DEFAULT_MS, WORK_MAX_MS, create_app


def test_hello_names_greeting_and_instance() -> None:
    client = create_app({"POD_NAME": "api-7d9f-x2", "GREETING": "Hi"}).test_client()
    resp = client.get("/api/hello")
    assert resp.status_code == 200
    assert resp.is_json
    assert resp.get_json() == {"greeting": "Hi", "instance": "api-7d9f-x2", "message": "Hi from api-7d9f-x2"}


def test_defaults_greeting_hello_and_hostname() -> None:
    body = create_app({}).test_client().get("/api/hello").get_json()
    assert body["greeting"] == "Hello"
    assert body["instance"] == socket.gethostname()


def test_healthz() -> None:
    resp = create_app({"POD_NAME": "p"}).test_client().get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "instance": "p"}


def test_work_burns_cpu_for_the_asked_time_and_names_the_instance() -> None:
    client = create_app({"POD_NAME": "p"}).test_client()
    before = time.thread_time()
    resp = client.get("/api/work?ms=30")
    spent = time.thread_time() - before
    assert resp.status_code == 200
    assert resp.get_json() == {"instance": "p", "ms": 30}
    assert spent >= 0.03
    assert client.get("/api/work").get_json()["ms"] == WORK_DEFAULT_MS


@pytest.mark.parametrize("query", ["ms=-1", f"ms={WORK_MAX_MS + 1}", "ms=lots"])
def test_work_refuses_a_bad_duration(query: str) -> None:
    resp = create_app({}).test_client().get(f"/api/work?{query}")
    assert resp.status_code == 400
    assert "ms must be" in resp.get_json()["error"]


@pytest.mark.parametrize("size", [0, 1, 65536, 1024 * 1024])
def test_echo_answers_the_length_of_the_body_it_was_sent(size: int) -> None:
    client = create_app({"POD_NAME": "p"}).test_client()
    resp = client.post("/api/echo", data=b"x" * size)
    assert resp.status_code == 200
    assert resp.get_json() == {"instance": "p", "bytes": size}
    assert client.get("/api/echo").status_code == 405


def test_unknown_path_and_method() -> None:
    client = create_app({}).test_client()
    assert client.get("/nope").status_code == 404
    assert client.post("/api/hello").status_code == 405


def test_gunicorn_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "6000")
    monkeypatch.setenv("GRACEFUL_TIMEOUT", "7")
    monkeypatch.setenv("POD_NAME", "pod%x")
    conf = importlib.reload(gunicorn_conf)
    assert conf.bind == ["0.0.0.0:6000"]
    assert conf.graceful_timeout == 7
    assert conf.worker_class == "gthread"
    assert conf.workers == 2
    assert "instance=pod%%x" in conf.access_log_format
    assert '"%(r)s" %(s)s' in conf.access_log_format

    monkeypatch.delenv("PORT")
    monkeypatch.delenv("GRACEFUL_TIMEOUT")
    conf = importlib.reload(conf)
    assert conf.bind == ["0.0.0.0:5252"]
    assert conf.graceful_timeout == 20
