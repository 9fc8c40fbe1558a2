"""The latest known body of each of our children with a fixed name, from the watches kopf already runs.

A pass used to GET every child (a dozen requests) before comparing; at a burst of pod events, or 1000
ScaledApis after a restart, those reads were most of the API server's work. Every child event kopf
delivers (label-filtered to ours) and every create or patch answer now updates this cache, and a pass
compares against it; a child that is not here is created at once, and read only when the create is
answered 409 (it exists: the watches are still listing after a restart, or it is a user's object).

Why a stale entry does no harm: the watch delivers every later change of a cached child, and its event
triggers a pass (seen.py). A pass on a stale body at worst sends a merge patch that changes nothing, or
leaves a drift for the pass that the pending event brings. Objects that are not labelled as ours (a
user's object that shares a child's name) are never watched, so never cached: they are read after the
409 on every pass, and the ownership check sees them as they are. Deleted children are dropped on
their DELETED event.

Bodies are kept as compact JSON without metadata.managedFields, zlib-compressed (a few hundred bytes a
child; 13 children per ScaledApi), and parsed again on each use (tens of microseconds), so that 1000
ScaledApis cost a few MB, not the hundreds their parsed dicts would.
Thread-safe: handlers run in kopf's thread pool and on its event loop.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Mapping
from typing import Any

# The kinds a pass reads by name (reconcile.apply); pods and EndpointSlices are listed, not cached.
CACHED_KINDS = frozenset(
    {
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    }
)

Key = tuple[str, str, str]  # (kind, namespace, name)


def _key(obj: Mapping[str, Any]) -> Key | None:
    meta = obj.get("metadata") or {}
    kind, namespace, name = obj.get("kind"), meta.get("namespace"), meta.get("name")
    if kind not in CACHED_KINDS or not namespace or not name:
        return None
    return (str(kind), str(namespace), str(name))


def _compact(obj: Mapping[str, Any]) -> bytes:
    meta = {key: value for key, value in (obj.get("metadata") or {}).items() if key != "managedFields"}
    text = json.dumps({**obj, "metadata": meta}, separators=(",", ":"))
    return zlib.compress(text.encode("utf-8"), level=1)


class ChildCache:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._bodies: dict[Key, bytes] = {}

    def put(self, obj: Mapping[str, Any] | None) -> None:
        """The body as the API server answered a create or patch, or as a watch event carried it."""
        key = _key(obj) if obj else None
        if obj is None or key is None:
            return
        body = _compact(obj)
        with self._guard:
            self._bodies[key] = body

    def drop(self, obj: Mapping[str, Any]) -> None:
        key = _key(obj)
        if key is not None:
            with self._guard:
                self._bodies.pop(key, None)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._guard:
            body = self._bodies.get((kind, namespace, name))
        if body is None:
            return None
        found: dict[str, Any] = json.loads(zlib.decompress(body))
        return found

    def on_event(self, body: Mapping[str, Any], event_type: str | None) -> None:
        """A child's watch event: remember its body, or forget it when it was deleted."""
        if event_type == "DELETED":
            self.drop(body)
        else:
            self.put(body)

    def clear(self) -> None:
        with self._guard:
            self._bodies.clear()

    def size_bytes(self) -> int:
        with self._guard:
            return sum(len(body) for body in self._bodies.values())


CHILDREN = ChildCache()
