"""The ScaledApis the operator reconciles, and when to try a failed reconcile again: one growing delay
per ScaledApi, whatever triggered it.

A reconcile fails when a child was refused or failed by the API server (the status says so), or when
the pass could not finish at all (the API server unreachable, the status not written). Every trigger
(create, update, resume, child events, the resync) records its result here; the handlers' retry loop
reconciles each ScaledApi again when its delay is over, and the resync reconciles every known one (so
that it needs no permission to list ScaledApis beyond the watched namespaces). kopf does not retry
`@kopf.on.event` handlers, so without this a failed reconcile triggered by a child event would simply
be dropped; and a kopf handler that raised would post a Warning event on every retry.

Thread-safe: the sync handlers run in kopf's thread pool, the retry loop in the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str]  # (namespace, name) of a ScaledApi


@dataclass(frozen=True)
class Backoff:
    """`first` seconds after the first failure, doubling with each further one, at most `limit`."""

    first: float = 5.0
    factor: float = 2.0
    limit: float = 300.0

    def delay(self, failures: int) -> float:
        if failures < 1:
            return 0.0
        return float(min(self.first * self.factor ** (failures - 1), self.limit))


@dataclass
class _Entry:
    failures: int
    due: float | None  # monotonic time of the next try; None while a try is under way


class RetryQueue:
    """Known ScaledApis; failed ones with their count of failures in a row and the time they are due."""

    def __init__(self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._guard = threading.Lock()
        self._entries: dict[Key, _Entry] = {}
        # Known ScaledApis, with the monotonic time their last pass went through (None: none yet).
        self._known: dict[Key, float | None] = {}

    def seen(self, key: Key) -> None:
        """A ScaledApi that exists (a handler was called for it): the resync reconciles it from now on."""
        with self._guard:
            self._known.setdefault(key, None)

    def gone(self, key: Key) -> None:
        """The ScaledApi no longer exists: neither retried nor resynced."""
        with self._guard:
            self._known.pop(key, None)
            self._entries.pop(key, None)

    def known(self) -> list[Key]:
        with self._guard:
            return sorted(self._known)

    def stale(self, age: float, limit: int) -> list[Key]:
        """At most `limit` known ScaledApis with no pass gone through for `age` seconds, the longest
        waiting first (those with none yet before all)."""
        now = self._clock()
        with self._guard:
            waiting = sorted(
                (-1.0 if last is None else last, key)
                for key, last in self._known.items()
                if last is None or now - last >= age
            )
        return [key for _, key in waiting[:limit]]

    def failed(self, key: Key) -> float:
        """Record one more failure in a row; returns the delay until the ScaledApi is due again."""
        with self._guard:
            entry = self._entries.setdefault(key, _Entry(0, None))
            entry.failures += 1
            delay = self.backoff.delay(entry.failures)
            entry.due = self._clock() + delay
            return delay

    def succeeded(self, key: Key) -> None:
        """A reconcile went through: no retry, and the next failure starts from the first delay."""
        with self._guard:
            self._entries.pop(key, None)
            if key in self._known:
                self._known[key] = self._clock()

    def take_due(self) -> list[Key]:
        """The ScaledApis whose delay is over, in the order they became due. Each is handed out once;
        the try's result (failed or succeeded) schedules it again or clears it."""
        now = self._clock()
        with self._guard:
            due = sorted(
                (entry.due, key)
                for key, entry in self._entries.items()
                if entry.due is not None and entry.due <= now
            )
            for _, key in due:
                self._entries[key].due = None
            return [key for _, key in due]

    def failing(self) -> int:
        """How many ScaledApis wait for a retry (their last reconcile failed)."""
        with self._guard:
            return len(self._entries)

    def failures(self, key: Key) -> int:
        with self._guard:
            entry = self._entries.get(key)
            return entry.failures if entry else 0

    def due_in(self, key: Key) -> float | None:
        """Seconds until the ScaledApi is due again (<= 0: due now); None when no retry is scheduled."""
        with self._guard:
            entry = self._entries.get(key)
            if entry is None or entry.due is None:
                return None
            return entry.due - self._clock()
