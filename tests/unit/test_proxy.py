"""The reloader's pure parts: watch-line and list parsing, report body, apply decision."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from scaledapi_proxy.applier import NginxApplier, config_hash, nginx_check_command, nginx_run_command, shorten
from scaledapi_proxy.report import report_patch, rfc3339
from scaledapi_proxy.watch import parse_list, parse_watch_line


def cm(rv: str, text: str | None = "events {}") -> dict[str, object]:
    obj: dict[str, object] = {"kind": "ConfigMap", "metadata": {"name": "demo-proxy", "resourceVersion": rv}}
    if text is not None:
        obj["data"] = {"nginx.conf": text}
    return obj


def test_modified_event() -> None:
    ev = parse_watch_line(json.dumps({"type": "MODIFIED", "object": cm("42", "x")}).encode() + b"\n")
    assert ev is not None
    assert ev.type == "MODIFIED"
    assert ev.resource_version == "42"
    assert ev.configmap is not None
    assert ev.configmap.text == "x"


def test_configmap_without_data() -> None:
    ev = parse_watch_line(json.dumps({"type": "ADDED", "object": cm("5", None)}))
    assert ev is not None
    assert ev.configmap is not None
    assert ev.configmap.text is None


def test_bookmark() -> None:
    line = {"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": {"resourceVersion": "77"}}}
    ev = parse_watch_line(json.dumps(line))
    assert ev is not None
    assert (ev.type, ev.resource_version, ev.configmap) == ("BOOKMARK", "77", None)


def test_error_gone() -> None:
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 1"}
    ev = parse_watch_line(json.dumps({"type": "ERROR", "object": status}))
    assert ev is not None
    assert (ev.type, ev.error_code) == ("ERROR", 410)
    assert "too old" in ev.error_message


def test_blank_and_garbage_lines() -> None:
    assert parse_watch_line(b"\n") is None
    with pytest.raises(ValueError):
        parse_watch_line(b"{not json")
    with pytest.raises(ValueError):
        parse_watch_line(b'{"object": {}}')


def test_list() -> None:
    body = json.dumps({"kind": "ConfigMapList", "metadata": {"resourceVersion": "900"}, "items": [cm("899")]})
    found, rv = parse_list(body, "demo-proxy")
    assert rv == "900"
    assert found is not None
    assert found.resource_version == "899"
    missing, rv2 = parse_list(json.dumps({"metadata": {"resourceVersion": "901"}, "items": []}), "demo-proxy")
    assert (missing, rv2) == (None, "901")
    with pytest.raises(ValueError):
        parse_list("{}", "demo-proxy")


def test_report_patch_is_a_merge_patch_of_one_key() -> None:
    when = dt.datetime(2025, 11, 21, 5, 30, 1, 123456, tzinfo=dt.UTC)
    patch = report_patch("demo-proxy-abc", "0123456789abcdef", "Rejected", "nginx: [emerg] bad", when)
    assert list(patch) == ["data"]
    assert list(patch["data"]) == ["demo-proxy-abc"]
    value = json.loads(patch["data"]["demo-proxy-abc"])
    assert value == {
        "hash": "0123456789abcdef",
        "state": "Rejected",
        "message": "nginx: [emerg] bad",
        "time": "2025-11-21T05:30:01Z",
    }


def test_rfc3339_converts_to_utc() -> None:
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert rfc3339(when) == "2025-01-02T01:04:05Z"


def test_long_messages_keep_their_end() -> None:
    msg = "x" * 5000 + "nginx: configuration file test failed"
    short = shorten(msg)
    assert len(short) == 1000
    assert short.endswith("test failed")


def test_decision_only_new_texts_are_applied() -> None:
    applier = NginxApplier("/nonexistent/nginx.conf")
    assert applier.needs_apply("a")
    applier.last_hash = config_hash("a")
    assert not applier.needs_apply("a")
    assert applier.needs_apply("b")


def test_nginx_commands_log_to_stderr_and_stay_in_the_foreground() -> None:
    check = nginx_check_command("nginx", "/run/nginx/nginx.conf.candidate")
    assert check[:2] == ["nginx", "-t"]
    assert check[check.index("-e") + 1] == "stderr"
    assert check[-2:] == ["-g", "daemon off;"]
    run = nginx_run_command("nginx", "/run/nginx/nginx.conf")
    assert run == ["nginx", "-e", "stderr", "-c", "/run/nginx/nginx.conf", "-g", "daemon off;"]
