"""Per-ScaledApi locks and remembered plans, shared by the fast paths (upstream.py, wake.py).

Passes run in threads: each fast path keeps, per ScaledApi, one lock that its writes share with the
full pass, and the plan that the last full pass left for it.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

Key = tuple[str, str]  # (namespace, ScaledApi name)
P = TypeVar("P")


class KeyedPlans(Generic[P]):
    """One lock and one remembered plan per ScaledApi (thread-safe)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Key, threading.Lock] = {}
        self._plans: dict[Key, P] = {}

    def lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def plan(self, key: Key) -> P | None:
        with self._guard:
            return self._plans.get(key)

    def remember(self, key: Key, plan: P | None) -> None:
        """Keep `plan` for the fast path; None forgets it."""
        with self._guard:
            if plan is None:
                self._plans.pop(key, None)
            else:
                self._plans[key] = plan

    def forget(self, key: Key) -> None:
        """The ScaledApi is gone: drop everything kept for it."""
        with self._guard:
            self._plans.pop(key, None)
            self._locks.pop(key, None)
