"""Faults that must not wedge the proxy: the reloader in this process, the real nginx, the fake API server.

The Reloader runs as in the pod (watch and sync threads, nginx as a child) but with short timings, so
that an ``nginx -t`` timeout, a dead watch connection or a call past its deadline shows within seconds.
tests/integration/test_proxy_process.py runs the real entrypoint with the production timings.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, config_hash, render_nginx_conf
from scaledapi_proxy.kube import KubeClient, Timeouts
from scaledapi_proxy.main import Reloader, Settings, Tuning
from tests.integration.fake_kube_api import FakeKubeApi
from tests.integration.itest_support import Backend, free_port, hello, wait_for

POD = "demo-proxy-7f9c-faults"
DEADLINE_S = 15.0
# Short but consistent: the server ends a healthy watch after 1 s, 2 s of silence is a dead connection.
TIMEOUTS = Timeouts(request_s=1.0, watch_s=1, read_s=2.0, watch_deadline_s=3.0)
TUNING = Tuning(check_timeout_s=1.0, backoff_min_s=0.2, backoff_max_s=1.0, withdraw_deadline_s=3.0)


@dataclass
class InProcessProxy:
    api: FakeKubeApi
    settings: NginxSettings  # of the rendered nginx config
    proxy_settings: Settings
    caplog: pytest.LogCaptureFixture
    reloader: Reloader | None = None

    def start(self) -> Reloader:
        """Start the watch and sync threads (set faults and the first text before, if need be)."""
        port = int(self.api.url.rsplit(":", 1)[1])
        client = KubeClient("127.0.0.1", port, tls=False, token_path=None, ca_path=None, timeouts=TIMEOUTS)
        self.reloader = Reloader(self.proxy_settings, client, TUNING)
        self.reloader.start()
        return self.reloader

    def stop(self) -> None:
        """As at SIGTERM: nginx quits gracefully, the pod's key is removed."""
        reloader = self.reloader
        assert reloader is not None
        reloader.handle_signal(signal.SIGTERM, None)
        if reloader.nginx is not None:
            reloader.nginx.wait(DEADLINE_S)
        reloader.join_sync()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.listen_port}"

    @property
    def conf_path(self) -> Path:
        return Path(self.proxy_settings.conf_path)

    @property
    def handled(self) -> str | None:
        assert self.reloader is not None
        return self.reloader.syncer.handled

    def render(self, endpoints: list[Endpoint]) -> str:
        return render_nginx_conf(self.settings, endpoints)

    def reported(self, text: str) -> dict[str, Any] | None:
        """The pod's current key in the status ConfigMap when it is about ``text``."""
        value = self.api.status_value(POD)
        return value if value is not None and value["hash"] == config_hash(text) else None

    def count(self, event: str, text: str | None = None) -> int:
        """Log lines ``event=<event>`` (about ``text`` when given)."""
        needle = f"event={event} "
        tag = f"hash={config_hash(text)}" if text is not None else ""
        return sum(1 for r in self.caplog.records if needle in r.getMessage() + " " and tag in r.getMessage())

    def serves(self, names: set[str]) -> bool:
        try:
            return {hello(self.url) for _ in range(2 * len(names))} == names
        except Exception:
            return False


@pytest.fixture
def run(nginx_bin: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[InProcessProxy]:
    """The fake API and the proxy's settings; the test calls ``run.start()``."""
    caplog.set_level(logging.INFO, logger="scaledapi_proxy")
    api = FakeKubeApi("demo", "demo-proxy", "demo-proxy-status")
    api.start()
    runtime = tmp_path / "nginx"
    proxy_settings = Settings(
        pod_name=POD,
        namespace="demo",
        configmap="demo-proxy",
        status_configmap="demo-proxy-status",
        conf_path=str(runtime / "nginx.conf"),
        nginx_bin=nginx_bin,
    )
    settings = NginxSettings(listen_port=free_port(), runtime_dir=str(runtime))
    harness = InProcessProxy(api, settings, proxy_settings, caplog)
    yield harness
    if harness.reloader is not None and not harness.reloader.stopping.is_set():
        harness.stop()
    api.stop()


def started_with(run: InProcessProxy, text: str, names: set[str]) -> None:
    run.api.set_text(text)
    run.start()
    wait_for(lambda: run.reported(text) is not None, DEADLINE_S, "the first report")
    wait_for(lambda: run.serves(names), DEADLINE_S, f"nginx serving {names}")


def test_nginx_t_timeout_is_retried_not_rejected(
    run: InProcessProxy, start_backends: Callable[..., list[Backend]], tmp_path: Path
) -> None:
    a, b = start_backends("nt-a", "nt-b")
    first = run.render([a.endpoint])
    started_with(run, first, {"nt-a"})

    # A real nginx -t that cannot finish: it includes a FIFO nobody writes to, so open() blocks.
    fifo = tmp_path / "extra.conf"
    os.mkfifo(fifo)
    second = run.render([a.endpoint, b.endpoint]).replace("http {\n", f"http {{\n    include {fifo};\n", 1)
    run.api.set_text(second)
    wait_for(lambda: run.count("apply-failed", second) >= 2, DEADLINE_S, "two nginx -t timeouts")
    assert run.reported(second) is None  # not reported as Rejected
    assert run.reported(first) is not None
    assert run.handled == config_hash(first)  # not remembered as done
    assert "did not finish within 1s" in run.caplog.text
    assert run.serves({"nt-a"})

    # The obstacle goes away: the same text is tried again, without any new event, and goes live.
    plain = tmp_path / "extra.conf.new"
    plain.write_text("# an empty include\n")
    plain.replace(fifo)  # atomic: a retry sees either the FIFO or the file, never no file
    wait_for(lambda: run.reported(second) is not None, DEADLINE_S, f"the retried text\n{run.caplog.text}")
    report = run.reported(second)
    assert report is not None
    assert report["state"] == "Applied"
    wait_for(lambda: run.serves({"nt-a", "nt-b"}), DEADLINE_S, "both backends")
    assert run.count("applied", second) == 1


def test_write_error_is_retried_not_rejected(
    run: InProcessProxy, start_backends: Callable[..., list[Backend]]
) -> None:
    a, b = start_backends("we-a", "we-b")
    first = run.render([a.endpoint])
    started_with(run, first, {"we-a"})

    blocker = Path(str(run.conf_path) + ".candidate")
    blocker.mkdir()  # the candidate file cannot be written: a real I/O error
    second = run.render([b.endpoint])
    run.api.set_text(second)
    wait_for(lambda: run.count("apply-failed", second) >= 2, DEADLINE_S, "two failed writes")
    assert run.reported(second) is None
    assert run.reported(first) is not None
    assert run.conf_path.read_text() == first

    blocker.rmdir()
    wait_for(lambda: run.reported(second) is not None, DEADLINE_S, "the retried text")
    report = run.reported(second)
    assert report is not None
    assert report["state"] == "Applied"
    wait_for(lambda: run.serves({"we-b"}), DEADLINE_S, "the new backend")


def test_a_reload_nginx_does_not_take_is_retried_with_the_previous_file_live(
    run: InProcessProxy, start_backends: Callable[..., list[Backend]]
) -> None:
    """nginx -t does not bind ports, the reload does: a port someone holds passes the check, and the
    master keeps its old config after SIGHUP. Not a Rejected: retried until the port is free."""
    (a,) = start_backends("rl-a")
    first = run.render([a.endpoint])
    started_with(run, first, {"rl-a"})

    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("0.0.0.0", 0))  # noqa: S104 - where nginx's `listen PORT` binds
    busy.listen()
    moved = dataclasses.replace(run.settings, listen_port=busy.getsockname()[1])
    second = render_nginx_conf(moved, [a.endpoint])
    try:
        run.api.set_text(second)
        wait_for(lambda: run.count("apply-failed", second) >= 1, DEADLINE_S, "a reload nginx did not take")
        assert (
            "started no new workers" in run.caplog.text and "previous file is live again" in run.caplog.text
        )
        assert run.reported(second) is None  # no Rejected: nginx -t had nothing against the text
        assert run.reported(first) is not None
        assert run.handled == config_hash(first)
        assert run.conf_path.read_text() == first  # the live file is what the master serves
        assert run.serves({"rl-a"})
    finally:
        busy.close()

    # The port is free: the same text is tried again, without any new event, and goes live.
    wait_for(lambda: run.reported(second) is not None, DEADLINE_S, f"the retried text\n{run.caplog.text}")
    report = run.reported(second)
    assert report is not None and report["state"] == "Applied"
    assert run.conf_path.read_text() == second
    assert hello(f"http://127.0.0.1:{moved.listen_port}") == "rl-a"


def test_a_syntax_error_is_a_definite_rejection_tried_once(
    run: InProcessProxy, start_backends: Callable[..., list[Backend]]
) -> None:
    (a,) = start_backends("se-a")
    first = run.render([a.endpoint])
    started_with(run, first, {"se-a"})

    broken = first.replace("proxy_pass http://", "proxy_passs http://")
    run.api.set_text(broken)
    wait_for(lambda: run.reported(broken) is not None, DEADLINE_S, "the rejection")
    report = run.reported(broken)
    assert report is not None
    assert report["state"] == "Rejected"
    assert 'unknown directive "proxy_passs"' in report["message"]

    # Re-lists (after a 410) see the same text again: not tried again, not reported again.
    for _ in range(2):
        lists = run.api.lists
        run.api.expire()
        wait_for(lambda lists=lists: run.api.lists > lists, DEADLINE_S, "a re-list")  # type: ignore[misc]
    assert run.count("rejected", broken) == 1
    assert len([r for r in run.api.status_reports(POD) if r["hash"] == config_hash(broken)]) == 1
    assert run.serves({"se-a"})


def test_failed_reports_are_sent_again_without_a_new_event(
    run: InProcessProxy, start_backends: Callable[..., list[Backend]]
) -> None:
    (a,) = start_backends("rp-a")
    # A refused patch, a dropped connection, a server that never answers (past request_s), one that
    # answers a byte at a time (past request_s although every read gets a byte within 0.1 s).
    run.api.fault("patch", "500", "drop", "hang", "trickle")
    text = run.render([a.endpoint])
    run.api.set_text(text)
    run.start()
    wait_for(lambda: run.serves({"rp-a"}), DEADLINE_S, "nginx serving")

    wait_for(lambda: run.reported(text) is not None, DEADLINE_S, f"the report\n{run.caplog.text}")
    assert run.api.faults_left("patch") == 0
    assert run.api.attempts["patch"] == 5
    assert run.count("report-failed") == 4
    assert run.count("applied", text) == 1  # only the report was retried, not the apply
    assert "did not finish within 1s" in run.caplog.text  # the hard deadline ended hang and trickle


@pytest.mark.parametrize("modes", [("500", "drop"), ("hang",), ("trickle",)])
def test_failed_lists_are_retried(
    run: InProcessProxy,
    start_backends: Callable[..., list[Backend]],
    modes: tuple[str, ...],
) -> None:
    (a,) = start_backends("fl-a")
    text = run.render([a.endpoint])
    run.api.fault("list", *modes)
    run.api.set_text(text)
    run.start()
    wait_for(lambda: run.reported(text) is not None, DEADLINE_S, f"the report after failed lists {modes}")
    assert run.api.attempts["list"] == len(modes) + 1
    # The first config is reported once written, as nginx starts on it; the port opens a moment later.
    wait_for(lambda: run.serves({"fl-a"}), DEADLINE_S, "nginx serving after failed lists")


@pytest.mark.parametrize("mode", ["hang", "trickle", "drop", "500"])
def test_a_broken_watch_is_noticed_and_the_configmap_listed_again(
    run: InProcessProxy, start_backends: Callable[..., list[Backend]], mode: str
) -> None:
    (a,) = start_backends("dw-a")
    first = run.render([a.endpoint])
    started_with(run, first, {"dw-a"})

    lists = run.api.lists
    run.api.fault("watch", mode)
    wait_for(lambda: run.api.faults_left("watch") == 0, DEADLINE_S, f"the proxy's next watch ({mode})")
    changed = time.monotonic()
    second = run.render([])  # no endpoint: nginx answers 503
    run.api.set_text(second)  # the broken watch never delivers this event: only a re-list finds it

    wait_for(lambda: run.reported(second) is not None, DEADLINE_S, f"the change after a {mode} watch")
    noticed_s = time.monotonic() - changed
    assert run.api.lists > lists  # listed again after the broken watch
    # Noticed within read_s (hang) or watch_deadline_s (trickle) plus a backoff, not never.
    assert noticed_s < TIMEOUTS.watch_deadline_s + TUNING.backoff_max_s + 2
    resp = requests.get(f"{run.url}/api/hello", timeout=5, headers={"Connection": "close"})
    assert resp.status_code == 503
    print(f"{mode} watch: change applied {noticed_s * 1000:.0f} ms after it was made")


def test_a_stop_removes_the_pods_key_only(
    run: InProcessProxy, start_backends: Callable[..., list[Backend]]
) -> None:
    (a,) = start_backends("st-a")
    run.api.put_status("demo-proxy-7f9c-other", {"hash": "0" * 16, "state": "Applied"})
    text = run.render([a.endpoint])
    started_with(run, text, {"st-a"})
    run.api.fault("patch", "500")  # the first removal fails: it is tried again

    run.stop()
    assert run.api.status_value(POD) is None
    assert run.api.status_value("demo-proxy-7f9c-other") == {"hash": "0" * 16, "state": "Applied"}
    assert run.count("withdrawn") == 1
