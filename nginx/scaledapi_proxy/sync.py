"""What the reloader does next: apply the newest ConfigMap text, report its result, retry what failed.

The watch thread ``offer``s every ConfigMap it sees; the sync thread ``run``s this loop:

* the newest text is applied until it has a definite result: Applied, or Rejected by ``nginx -t``. An
  I/O error, an ``nginx -t`` timeout or a reload the nginx master did not take (no new workers after
  SIGHUP: it kept its old config, and the applier has put the previous file back) is no result
  (``ApplyError``): the same text is tried again after a backoff (BACKOFF_MIN_S doubling up to
  BACKOFF_MAX_S), and a newer text is tried at once;
* a result is reported (merge patch of the pod's key) until the patch succeeds, with the same backoff;
  a newer result replaces a report not sent yet;
* at a stop the pod's key is removed from the status ConfigMap, so that it holds no key of a pod that is
  gone (pods that vanish without a stop are left to whoever can list pods: see ``report.stale_keys``).

No I/O of its own: the applier and the patch function are handed in, so unit tests drive it with fakes
and a fake clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from scaledapi_proxy.applier import APPLIED, REJECTED, ApplyError, ApplyResult, config_hash
from scaledapi_proxy.kube import HTTP_NOT_FOUND, REQUEST_ERRORS, ApiError
from scaledapi_proxy.report import report_patch, withdrawal_patch
from scaledapi_proxy.watch import CONF_KEY, ConfigMapState

log = logging.getLogger("scaledapi_proxy")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0
WITHDRAW_DEADLINE_S = 10.0  # at a stop: keep trying to remove the pod's key for this long
IDLE_WAIT_S = 0.5  # the loop looks at the stop flag at least this often


class Backoff:
    """Delays for consecutive failures: ``first_s``, doubling, never above ``max_s``."""

    def __init__(self, first_s: float = BACKOFF_MIN_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self._next = first_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


class Applier(Protocol):
    def apply(self, text: str) -> ApplyResult: ...


@dataclass(frozen=True)
class Offer:
    configmap: ConfigMapState
    received: float  # monotonic time the event arrived
    source: str  # list or watch

    @property
    def key(self) -> str:
        """What is remembered once handled: the text's hash, or a marker for a ConfigMap without the key."""
        text = self.configmap.text
        return config_hash(text) if text is not None else f"missing-key:{self.configmap.resource_version}"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Syncer:
    def __init__(
        self,
        pod_name: str,
        applier: Applier,
        patch: Callable[[dict[str, Any]], None],
        *,
        on_result: Callable[[ApplyResult], None] = lambda _result: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = _utc_now,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        withdraw_deadline_s: float = WITHDRAW_DEADLINE_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pod_name = pod_name
        self.applier = applier
        self.patch = patch
        self.on_result = on_result
        self.clock = clock
        self.wall_clock = wall_clock
        self.withdraw_deadline_s = withdraw_deadline_s
        self.sleep = sleep
        self.cond = threading.Condition()
        # Shared with the watch thread (under cond):
        self.desired: Offer | None = None
        self.dirty = False  # an offer arrived since the last step
        self.apply_at = 0.0  # no retry of the desired text before this (clock)
        self.apply_backoff = Backoff(backoff_min_s, backoff_max_s)
        # The sync thread's own:
        self.handled: str | None = None  # key of the last offer with a definite result
        self.pending_report: dict[str, Any] | None = None
        self.report_at = 0.0
        self.report_backoff = Backoff(backoff_min_s, backoff_max_s)
        self.withdrawn = False
        # Scale to zero: what the pod should say (under cond, set by the idle clock) and what it said.
        self.idle_wanted: bool | None = None
        self.idle_said: bool | None = None
        self.last_result: tuple[str, str, str] | None = None  # hash, state, message

    # --- from the watch thread -----------------------------------------------------------------------
    def offer(self, configmap: ConfigMapState, received: float, source: str) -> None:
        new = Offer(configmap, received, source)
        with self.cond:
            if self.desired is None or self.desired.key != new.key:
                # Another text: try it at once, whatever the previous one's retries were at.
                self.apply_at = 0.0
                self.apply_backoff.reset()
            self.desired = new
            self.dirty = True
            self.cond.notify_all()

    def set_idle(self, idle: bool | None) -> None:
        """Whether the pod has been idle for its idle time (None: its config has no scale to zero);
        a change is reported at once, with the last result."""
        with self.cond:
            if self.idle_wanted == idle:
                return
            self.idle_wanted = idle
            self.dirty = True
            self.cond.notify_all()

    # --- the sync thread -----------------------------------------------------------------------------
    def step(self) -> float | None:
        """Do what is due now; seconds until the next thing is due, None when only an offer brings work."""
        with self.cond:
            self.dirty = False
            offer, apply_at = self.desired, self.apply_at
            idle = self.idle_wanted
        if idle != self.idle_said and self.last_result is not None:
            self.idle_said = idle
            self._queue_report()
        if offer is not None and offer.key != self.handled and self.clock() >= apply_at:
            self._apply(offer)
        if self.pending_report is not None and not self.withdrawn and self.clock() >= self.report_at:
            self._send_report()
        with self.cond:
            offer, apply_at = self.desired, self.apply_at
        now = self.clock()
        due: list[float] = []
        if offer is not None and offer.key != self.handled:
            due.append(apply_at - now)
        if self.pending_report is not None and not self.withdrawn:
            due.append(self.report_at - now)
        return max(0.0, min(due)) if due else None

    def run(self, stopping: threading.Event) -> None:
        """Step until ``stopping`` is set, then remove the pod's key."""
        while not stopping.is_set():
            delay = self.step()
            deadline = None if delay is None else self.clock() + delay
            with self.cond:
                while not self.dirty and not stopping.is_set():
                    left = IDLE_WAIT_S if deadline is None else min(IDLE_WAIT_S, deadline - self.clock())
                    if left <= 0:
                        break
                    self.cond.wait(left)
        self.withdraw()

    def _apply(self, offer: Offer) -> None:
        cm = offer.configmap
        text = cm.text
        if text is None:
            log.warning("event=rejected rv=%s reason=no key %s", cm.resource_version, CONF_KEY)
            self._decided(offer.key, config_hash(""), REJECTED, f"ConfigMap has no key {CONF_KEY}")
            return
        try:
            result = self.applier.apply(text)
        except (ApplyError, OSError) as exc:
            with self.cond:
                if self.desired is not None and self.desired.key == offer.key:
                    delay = self.apply_backoff.next()
                    self.apply_at = self.clock() + delay
                else:
                    delay = 0.0  # a newer text came meanwhile: that one is tried at once
            log.warning(
                "event=apply-failed source=%s rv=%s hash=%s error=%r retry_in_s=%.1f",
                offer.source,
                cm.resource_version,
                offer.key,
                str(exc),
                delay,
            )
            return
        with self.cond:
            if self.desired is not None and self.desired.key == offer.key:
                self.apply_backoff.reset()
        self.on_result(result)
        _log_result(result, cm.resource_version, offer.received, offer.source)
        self._decided(offer.key, result.hash, result.state, result.message)

    def _decided(self, key: str, digest: str, state: str, message: str) -> None:
        self.handled = key
        self.last_result = (digest, state, message)
        with self.cond:
            self.idle_said = self.idle_wanted
        self._queue_report()

    def _queue_report(self) -> None:
        if self.last_result is None:
            return
        digest, state, message = self.last_result
        self.pending_report = report_patch(
            self.pod_name, digest, state, message, self.wall_clock(), self.idle_said
        )
        self.report_at = 0.0
        self.report_backoff.reset()

    def _send_report(self) -> None:
        patch = self.pending_report
        if patch is None:
            return
        try:
            self.patch(patch)
        except REQUEST_ERRORS as exc:
            delay = self.report_backoff.next()
            self.report_at = self.clock() + delay
            log.warning("event=report-failed error=%r retry_in_s=%.1f", str(exc), delay)
            return
        self.pending_report = None
        self.report_backoff.reset()
        log.info("event=reported pod=%s", self.pod_name)

    def withdraw(self) -> bool:
        """Remove the pod's key (the pod is going away); no report is sent after this. True when done."""
        self.withdrawn = True
        self.pending_report = None
        deadline = self.clock() + self.withdraw_deadline_s
        backoff = Backoff(self.report_backoff.first_s, self.report_backoff.max_s)
        while True:
            try:
                self.patch(withdrawal_patch(self.pod_name))
            except ApiError as exc:
                if exc.status == HTTP_NOT_FOUND:
                    log.info("event=withdrawn pod=%s detail=no status ConfigMap", self.pod_name)
                    return True
                error: Exception = exc
            except REQUEST_ERRORS as exc:
                error = exc
            else:
                log.info("event=withdrawn pod=%s", self.pod_name)
                return True
            delay = backoff.next()
            if self.clock() + delay > deadline:
                log.warning("event=withdraw-failed pod=%s error=%r", self.pod_name, str(error))
                return False
            log.warning("event=withdraw-retry error=%r retry_in_s=%.1f", str(error), delay)
            self.sleep(delay)  # bounded by the deadline above; the process is stopping anyway


def _log_result(result: ApplyResult, rv: str, received: float, source: str) -> None:
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
