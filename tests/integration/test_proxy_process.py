"""``python3 -m scaledapi_proxy`` as a process: real nginx, a fake API server for the ConfigMaps."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from scaledapi_operator.nginx_conf import config_hash
from scaledapi_proxy.applier import worker_pids
from tests.integration.itest_support import PROXY_POD as POD
from tests.integration.itest_support import Backend, ProxyRun, hello, http_ok, wait_for

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 15.0


def test_proxy_follows_the_configmap_and_stops_gracefully(
    proxy: Callable[[], ProxyRun], start_backends: Callable[..., list[Backend]]
) -> None:
    a, b = start_backends("pp-a", "pp-b")
    run = proxy()
    first = run.render([a.endpoint])
    run.api.set_text(first)  # exists before the proxy lists it

    wait_for(lambda: http_ok(f"{run.url}/healthz"), DEADLINE_S, f"nginx started by the proxy\n{run.log()}")
    assert hello(run.url) == "pp-a"
    wait_for(lambda: run.report_for(config_hash(first)) is not None, DEADLINE_S, "the first report")
    report = run.report_for(config_hash(first))
    assert report is not None
    assert report["state"] == "Applied"
    assert report["time"].endswith("Z")
    assert all(ct == "application/merge-patch+json" for ct, _ in run.api.patches)

    # A change through the watch: applied, reported, served.
    second = run.render([a.endpoint, b.endpoint])
    changed = time.monotonic()
    run.api.set_text(second)
    wait_for(lambda: {hello(run.url), hello(run.url)} == {"pp-a", "pp-b"}, DEADLINE_S, "both backends")
    print(f"watch event to both backends serving: {(time.monotonic() - changed) * 1000:.0f} ms")
    wait_for(lambda: run.report_for(config_hash(second)) is not None, DEADLINE_S, "the second report")
    assert "event=applied source=watch" in run.log()
    assert "event_to_done_ms=" in run.log()

    # A broken text: rejected with nginx's message, the old config keeps serving.
    broken = second.replace("proxy_pass http://", "proxy_passs http://")
    run.api.set_text(broken)
    wait_for(lambda: run.report_for(config_hash(broken)) is not None, DEADLINE_S, "the rejection report")
    rejected = run.report_for(config_hash(broken))
    assert rejected is not None
    assert rejected["state"] == "Rejected"
    assert "unknown directive" in rejected["message"]
    assert {hello(run.url) for _ in range(4)} == {"pp-a", "pp-b"}

    # 410 Gone: the proxy lists again and keeps following.
    lists = run.api.lists
    run.api.expire()
    wait_for(lambda: run.api.lists > lists, DEADLINE_S, "a re-list after 410")
    third = run.render([b.endpoint])
    run.api.set_text(third)
    wait_for(
        lambda: {hello(run.url) for _ in range(3)} == {"pp-b"}, DEADLINE_S, "only pp-b after the re-list"
    )

    # SIGTERM: nginx gets SIGQUIT, the proxy exits 0 with it.
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(DEADLINE_S) == 0
    assert not http_ok(f"{run.url}/healthz")
    assert "event=stop signal=SIGTERM" in run.log()


def test_proxy_exits_non_zero_when_nginx_dies(
    proxy: Callable[[], ProxyRun], start_backends: Callable[..., list[Backend]]
) -> None:
    (a,) = start_backends("pd-a")
    run = proxy()
    run.api.set_text(run.render([a.endpoint]))
    wait_for(lambda: http_ok(f"{run.url}/healthz"), DEADLINE_S, f"nginx started by the proxy\n{run.log()}")

    children = worker_pids(run.proc.pid)
    assert children is not None
    assert len(children) == 1
    os.kill(children.pop(), signal.SIGKILL)

    assert run.proc.wait(DEADLINE_S) != 0
    assert "event=nginx-died" in run.log()


def test_sigterm_removes_the_pods_key_and_keeps_the_others(
    proxy: Callable[[], ProxyRun], start_backends: Callable[..., list[Backend]]
) -> None:
    (a,) = start_backends("ps-a")
    run = proxy()
    other = {"hash": "0123456789abcdef", "state": "Applied", "message": "", "time": "2025-01-01T00:00:00Z"}
    run.api.put_status("demo-proxy-7f9c-other", other)  # another pod, still running
    text = run.render([a.endpoint])
    run.api.set_text(text)
    wait_for(lambda: run.api.status_value(POD) is not None, DEADLINE_S, f"the report\n{run.log()}")
    wait_for(lambda: http_ok(f"{run.url}/healthz"), DEADLINE_S, "nginx started by the proxy")

    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(DEADLINE_S) == 0
    assert run.api.status_value(POD) is None  # a pod that is gone leaves no key behind
    assert run.api.status_value("demo-proxy-7f9c-other") == other
    assert "event=withdrawn" in run.log()


def test_failures_are_retried_until_a_definite_result_is_reported(
    proxy: Callable[[], ProxyRun], start_backends: Callable[..., list[Backend]], tmp_path: Path
) -> None:
    """Production timings: a write error and failing patches delay the report; they never fake one."""
    a, b = start_backends("pf-a", "pf-b")
    run = proxy()
    first = run.render([a.endpoint])
    run.api.set_text(first)
    wait_for(lambda: run.report_for(config_hash(first)) is not None, DEADLINE_S, f"the report\n{run.log()}")

    blocker = tmp_path / "nginx" / "nginx.conf.candidate"
    blocker.mkdir()  # writing the candidate fails with a real I/O error
    run.api.fault("patch", "500", "drop")
    second = run.render([a.endpoint, b.endpoint])
    run.api.set_text(second)
    wait_for(lambda: run.log().count("event=apply-failed") >= 2, DEADLINE_S, "two failed writes")
    assert run.report_for(config_hash(second)) is None
    assert run.api.attempts["patch"] == 1  # nothing reported for a text without a verdict

    blocker.rmdir()
    wait_for(
        lambda: (run.api.status_value(POD) or {}).get("hash") == config_hash(second),
        DEADLINE_S,
        f"the report after the retries\n{run.log()}",
    )
    report = run.api.status_value(POD)
    assert report is not None
    assert report["state"] == "Applied"
    assert run.log().count("event=report-failed") == 2
    assert run.log().count(f"hash={config_hash(second)} check_ms=") == 1  # applied once, reported 3 times
    wait_for(lambda: {hello(run.url) for _ in range(4)} == {"pf-a", "pf-b"}, DEADLINE_S, "both backends")
