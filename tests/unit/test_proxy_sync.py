"""The reloader's decisions with fakes: what is retried, what is remembered, what is reported, and when.

A fake clock drives ``Syncer.step``; nothing sleeps. The applier and the status patch are fakes that fail
on demand; tests/integration/test_proxy_faults.py does the same with the real nginx and real sockets.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scaledapi_proxy.applier import APPLIED, REJECTED, ApplyError, ApplyResult, NginxApplier, config_hash
from scaledapi_proxy.kube import DEAD_WATCH_LIMIT_S, ApiError, Timeouts
from scaledapi_proxy.report import removal_patch, stale_keys, withdrawal_patch
from scaledapi_proxy.sync import Backoff, Syncer
from scaledapi_proxy.watch import ConfigMapState

POD = "demo-proxy-abc"
WHEN = dt.datetime(2025, 11, 21, 5, 30, 1, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeApplier:
    """Fails with ``ApplyError`` while ``failures`` has entries; then Applied, or Rejected for ``bad``."""

    def __init__(self, failures: int = 0, bad: frozenset[str] = frozenset()) -> None:
        self.failures = failures
        self.bad = bad
        self.calls: list[str] = []

    def apply(self, text: str) -> ApplyResult:
        self.calls.append(text)
        if self.failures > 0:
            self.failures -= 1
            raise ApplyError("nginx -t did not finish within 30s")
        state = REJECTED if text in self.bad else APPLIED
        return ApplyResult(config_hash(text), state, f"{state} {text}", 1.0, 1.0, 2.0, True)


class FakeStatus:
    """The status ConfigMap's data; the next ``failures`` patches raise ``error``."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error: Exception = error or OSError("connection refused")
        self.attempts = 0
        self.data: dict[str, str] = {}

    def patch(self, body: dict[str, Any]) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        for key, value in body["data"].items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def report(self) -> dict[str, Any] | None:
        raw = self.data.get(POD)
        return None if raw is None else dict(json.loads(raw))


def cm(text: str | None, rv: str = "7") -> ConfigMapState:
    return ConfigMapState("demo-proxy", rv, {} if text is None else {"nginx.conf": text})


def syncer(applier: FakeApplier, status: FakeStatus, clock: Clock, **kwargs: Any) -> Syncer:
    return Syncer(
        POD,
        applier,
        status.patch,
        clock=clock,
        wall_clock=lambda: WHEN,
        sleep=clock.sleep,
        backoff_min_s=0.5,
        backoff_max_s=4.0,
        **kwargs,
    )


def test_backoff_doubles_up_to_its_bound_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_no_verdict_is_retried_with_backoff_and_neither_reported_nor_remembered() -> None:
    clock, applier, status = Clock(), FakeApplier(failures=3), FakeStatus()
    s = syncer(applier, status, clock)
    s.offer(cm("A"), clock(), "watch")

    delays = []
    for _ in range(3):
        delay = s.step()
        assert delay is not None
        delays.append(delay)
        assert s.handled is None
        assert status.attempts == 0  # nothing reported: no Rejected for a timeout or an I/O error
        assert s.step() == pytest.approx(delay)  # not due yet: not tried again early
        clock.now += delay
    assert delays == [0.5, 1.0, 2.0]

    assert s.step() is None  # the fourth try succeeds; the report goes out in the same step
    assert applier.calls == ["A"] * 4
    assert s.handled == config_hash("A")
    assert status.report() == {
        "hash": config_hash("A"),
        "state": "Applied",
        "message": "Applied A",
        "time": "2025-11-21T05:30:01Z",
    }


def test_a_rejection_by_nginx_is_definite_reported_and_not_tried_again() -> None:
    clock, applier, status = Clock(), FakeApplier(bad=frozenset({"B"})), FakeStatus()
    s = syncer(applier, status, clock)
    s.offer(cm("B"), clock(), "watch")
    assert s.step() is None
    report = status.report()
    assert report is not None
    assert (report["hash"], report["state"]) == (config_hash("B"), "Rejected")

    s.offer(cm("B", rv="8"), clock(), "list")  # the same text again, after a re-list
    clock.now += 60
    assert s.step() is None
    assert applier.calls == ["B"]
    assert status.attempts == 1


def test_a_failed_report_is_sent_again_with_bounded_backoff_without_applying_again() -> None:
    clock, applier, status = Clock(), FakeApplier(), FakeStatus(failures=6, error=ApiError(503, "busy"))
    s = syncer(applier, status, clock)
    s.offer(cm("A"), clock(), "watch")

    delays = []
    while status.report() is None:
        delay = s.step()
        if delay is None:
            break
        delays.append(delay)
        clock.now += delay
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # doubling, never above the bound
    assert status.attempts == 7
    assert applier.calls == ["A"]  # the config was applied once; only the report was retried
    report = status.report()
    assert report is not None
    assert report["state"] == "Applied"


def test_a_newer_text_is_tried_at_once_and_replaces_the_unsent_report() -> None:
    clock, applier, status = Clock(), FakeApplier(failures=2), FakeStatus()
    s = syncer(applier, status, clock)
    s.offer(cm("A"), clock(), "watch")
    assert s.step() == 0.5
    clock.now += 0.5
    assert s.step() == 1.0  # A failed twice; the backoff grew
    s.offer(cm("C", rv="9"), clock(), "watch")  # before A's retry is due
    assert s.step() is None
    assert applier.calls == ["A", "A", "C"]
    report = status.report()
    assert report is not None
    assert report["hash"] == config_hash("C")


def test_a_text_offered_while_the_previous_one_fails_is_not_held_back_by_its_backoff() -> None:
    clock, status = Clock(), FakeStatus()
    s: Syncer

    class OfferingApplier(FakeApplier):
        def apply(self, text: str) -> ApplyResult:
            if text == "A":  # the watch delivers C while nginx -t runs on A, which then times out
                s.offer(cm("C", rv="9"), clock(), "watch")
            return super().apply(text)

    applier = OfferingApplier(failures=1)
    s = syncer(applier, status, clock)
    s.offer(cm("A"), clock(), "watch")
    assert s.step() == 0.0  # C is due at once, not after A's backoff
    assert s.step() is None
    assert applier.calls == ["A", "C"]
    report = status.report()
    assert report is not None
    assert report["hash"] == config_hash("C")


def test_the_same_text_offered_again_keeps_its_backoff() -> None:
    """A flapping watch re-lists the same text often; that must not turn the retries into a tight loop."""
    clock, applier, status = Clock(), FakeApplier(failures=5), FakeStatus()
    s = syncer(applier, status, clock)
    s.offer(cm("A"), clock(), "watch")
    assert s.step() == 0.5
    clock.now += 0.5
    assert s.step() == 1.0
    s.offer(cm("A", rv="8"), clock(), "list")
    assert s.step() == 1.0
    assert len(applier.calls) == 2


def test_a_configmap_without_the_key_is_rejected_once_per_version() -> None:
    clock, applier, status = Clock(), FakeApplier(), FakeStatus()
    s = syncer(applier, status, clock)
    s.offer(cm(None, rv="5"), clock(), "list")
    assert s.step() is None
    report = status.report()
    assert report is not None
    assert (report["state"], report["hash"]) == ("Rejected", config_hash(""))
    assert "no key nginx.conf" in report["message"]
    s.offer(cm(None, rv="5"), clock(), "list")
    s.step()
    assert status.attempts == 1
    assert applier.calls == []


def test_withdraw_removes_only_the_pods_key_and_no_report_follows() -> None:
    clock, applier, status = Clock(), FakeApplier(), FakeStatus()
    status.data["demo-proxy-other"] = "{}"
    s = syncer(applier, status, clock)
    s.offer(cm("A"), clock(), "watch")
    s.step()
    assert POD in status.data

    assert s.withdraw()
    assert status.data == {"demo-proxy-other": "{}"}
    s.offer(cm("D", rv="10"), clock(), "watch")  # an apply still in flight at the stop
    s.step()
    assert POD not in status.data


def test_withdraw_retries_within_its_deadline_then_gives_up() -> None:
    clock, status = Clock(), FakeStatus(failures=100)
    s = syncer(FakeApplier(), status, clock, withdraw_deadline_s=5.0)
    assert not s.withdraw()
    assert clock.slept == [0.5, 1.0, 2.0]  # the next wait (4 s) would pass the 5 s deadline
    assert status.attempts == 4

    clock2, status2 = Clock(), FakeStatus(failures=1)
    assert syncer(FakeApplier(), status2, clock2).withdraw()
    assert status2.attempts == 2


def test_withdraw_is_done_when_the_status_configmap_is_gone() -> None:
    clock, status = Clock(), FakeStatus(failures=100, error=ApiError(404, "not found"))
    assert syncer(FakeApplier(), status, clock).withdraw()
    assert status.attempts == 1


def wait_until(predicate: Callable[[], bool], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s:g}s waiting for {what}")
        time.sleep(0.01)  # poll interval, bounded by the deadline above


def test_run_applies_offers_from_another_thread_and_withdraws_at_the_stop() -> None:
    applier, status = FakeApplier(failures=1), FakeStatus(failures=1)
    s = Syncer(POD, applier, status.patch, backoff_min_s=0.05, backoff_max_s=0.2)
    stopping = threading.Event()
    thread = threading.Thread(target=s.run, args=(stopping,), daemon=True)
    thread.start()
    s.offer(cm("A"), time.monotonic(), "watch")
    wait_until(lambda: (status.report() or {}).get("hash") == config_hash("A"), 5, "A reported")
    s.offer(cm("B", rv="8"), time.monotonic(), "watch")
    wait_until(lambda: (status.report() or {}).get("hash") == config_hash("B"), 5, "B reported")
    assert applier.calls == ["A", "A", "B"]
    stopping.set()
    thread.join(5)
    assert not thread.is_alive()
    assert POD not in status.data


def test_applier_without_nginx_has_no_verdict_and_remembers_nothing(tmp_path: Path) -> None:
    applier = NginxApplier(str(tmp_path / "nginx.conf"), nginx_bin=str(tmp_path / "no-such-nginx"))
    with pytest.raises(ApplyError, match="cannot run"):
        applier.apply("events {}")
    assert applier.last_hash is None
    assert applier.needs_apply("events {}")
    assert not (tmp_path / "nginx.conf.candidate").exists()
    assert not (tmp_path / "nginx.conf").exists()


def test_applier_write_error_has_no_verdict(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf.candidate").mkdir()  # the candidate cannot be written
    applier = NginxApplier(str(tmp_path / "nginx.conf"), nginx_bin="/bin/true")
    with pytest.raises(ApplyError, match="IsADirectoryError"):
        applier.apply("events {}")
    assert applier.last_hash is None


def test_a_reload_the_master_did_not_take_is_no_verdict_and_the_previous_file_is_live_again(
    tmp_path: Path,
) -> None:
    """A "master" that ignores SIGHUP and starts no worker: as nginx that kept its old config."""
    ignore_hup = (
        "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    master = subprocess.Popen([sys.executable, "-c", ignore_hup], stdout=subprocess.PIPE)
    assert master.stdout is not None and master.stdout.readline()  # SIGHUP is ignored from now on
    try:
        live = tmp_path / "nginx.conf"
        live.write_text("events {} # old")
        applier = NginxApplier(
            str(live), nginx_bin="/bin/true", master_pid=lambda: master.pid, reload_confirm_s=0.2
        )
        with pytest.raises(ApplyError, match=r"started no new workers within 0\.2s") as raised:
            applier.apply("events {} # new")
        assert "the previous file is live again" in str(raised.value)
        assert live.read_text() == "events {} # old"
        assert not (tmp_path / "nginx.conf.candidate").exists()
        assert applier.last_hash is None and applier.needs_apply("events {} # new")
        assert master.poll() is None  # the signal went to it
    finally:
        master.kill()
        master.wait(5)


def test_a_reload_failure_is_retried_with_backoff_until_nginx_takes_the_text() -> None:
    """The syncer's side: no Rejected, no report until the reload works (FakeApplier's ApplyError)."""
    clock, applier, status = Clock(), FakeApplier(failures=2), FakeStatus()
    s = syncer(applier, status, clock)
    s.offer(cm("A"), clock(), "watch")
    assert s.step() == 0.5 and status.attempts == 0
    clock.now += 0.5
    assert s.step() == 1.0 and status.attempts == 0
    clock.now += 1.0
    assert s.step() is None
    assert (status.report() or {})["state"] == "Applied" and applier.calls == ["A"] * 3


def test_default_timeouts_notice_a_dead_watch_within_a_minute() -> None:
    t = Timeouts()
    assert t.watch_s < t.read_s < DEAD_WATCH_LIMIT_S  # the server ends a healthy watch before read_s
    assert t.watch_deadline_s < DEAD_WATCH_LIMIT_S
    assert 0 < t.request_s < DEAD_WATCH_LIMIT_S
    with pytest.raises(ValueError):
        Timeouts(watch_s=50, read_s=40)  # read_s would cut healthy idle watches
    with pytest.raises(ValueError):
        Timeouts(request_s=0)


def test_withdrawal_patch_removes_one_key() -> None:
    assert withdrawal_patch(POD) == {"data": {POD: None}}


def test_stale_keys_are_those_of_pods_that_are_gone() -> None:
    data = {"p-1": "{}", "p-2": "{}", "p-old": "{}", "p-evicted": "{}"}
    assert stale_keys(data, ["p-2", "p-1", "p-3"]) == ["p-evicted", "p-old"]
    assert stale_keys(data, data) == []
    assert removal_patch(["p-evicted", "p-old"], "41") == {
        "metadata": {"resourceVersion": "41"},
        "data": {"p-evicted": None, "p-old": None},
    }
