"""What the operator last saw of each ScaledApi's children, so that echoes trigger no reconcile.

Most child events say nothing new: the echo of our own create or patch, or at startup the watches
replaying every child that the resume reconcile has just read. Each used to cost a whole reconcile
(about fifteen requests); at 1000 ScaledApis a restart replays some 10,000 children. A reconcile now
records the resourceVersion of every child it read or wrote (and of the pods and EndpointSlices it
listed); an event whose object is at a recorded version is explained by that pass and is dropped.

resourceVersions are opaque: only equality is used. A change made after our read has another version,
so it is never explained away; a deletion always reconciles (its version is the deletion's own).
A resume is explained once a pass has finished since the operator started, since every pass reads
the ScaledApi afresh. Create, update, the resync and retries always reconcile.

Thread-safe: handlers run in kopf's thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (namespace, ScaledApi name)


@dataclass(frozen=True)
class ChildEvent:
    """A watch event of one child, at the resourceVersion it carries."""

    kind: str
    name: str
    resource_version: str


@dataclass(frozen=True)
class Resumed:
    """kopf resumed the ScaledApi at the operator's start."""


RESUMED = Resumed()
# Why a reconcile was asked for; None: it must reconcile (create, update, resync, retry, a deletion).
Trigger = ChildEvent | Resumed | None


def child_event(body: Mapping[str, Any], event_type: str | None) -> Trigger:
    """The trigger of a child's watch event; a deletion or a body without a version always reconciles."""
    meta = body.get("metadata") or {}
    version = meta.get("resourceVersion")
    if event_type == "DELETED" or not version or not body.get("kind") or not meta.get("name"):
        return None
    return ChildEvent(str(body["kind"]), str(meta["name"]), str(version))


class ChildVersions:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._versions: dict[Key, dict[tuple[str, str], str]] = {}
        self._finished: set[Key] = set()

    def saw(self, owner: Key, objects: Iterable[Mapping[str, Any] | None]) -> None:
        """Record the versions of `objects` (each with its kind), as read or written by a pass of owner."""
        found = _versions(objects, None)
        with self._guard:
            self._versions.setdefault(owner, {}).update(found)

    def saw_all(self, owner: Key, kind: str, items: Iterable[Mapping[str, Any]]) -> None:
        """Record a complete list of the owner's children of `kind` (list items carry no kind): entries
        of that kind not in it are dropped, so that pods come and go without the record growing."""
        found = _versions(items, kind)
        with self._guard:
            children = self._versions.setdefault(owner, {})
            for child in [child for child in children if child[0] == kind]:
                del children[child]
            children.update(found)

    def finished(self, owner: Key) -> None:
        """A whole pass of `owner` went through (it read the ScaledApi and every child)."""
        with self._guard:
            self._finished.add(owner)

    def explains(self, owner: Key, trigger: Trigger) -> bool:
        """Whether a pass already saw what `trigger` reports, so that it needs no reconcile."""
        with self._guard:
            if isinstance(trigger, Resumed):
                return owner in self._finished
            if isinstance(trigger, ChildEvent):
                seen = self._versions.get(owner, {}).get((trigger.kind, trigger.name))
                return seen == trigger.resource_version
            return False

    def forget(self, owner: Key) -> None:
        """The ScaledApi is gone."""
        with self._guard:
            self._versions.pop(owner, None)
            self._finished.discard(owner)

    def clear(self) -> None:
        """Forget everything, as a new operator process would (for tests)."""
        with self._guard:
            self._versions.clear()
            self._finished.clear()

    def size(self) -> int:
        """Recorded versions in all (for the memory budget's accounting)."""
        with self._guard:
            return sum(len(children) for children in self._versions.values())


def _versions(objects: Iterable[Mapping[str, Any] | None], kind: str | None) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for obj in objects:
        meta = (obj or {}).get("metadata") or {}
        object_kind = kind or (obj or {}).get("kind")
        if object_kind and meta.get("name") and meta.get("resourceVersion"):
            found[(str(object_kind), str(meta["name"]))] = str(meta["resourceVersion"])
    return found


SEEN = ChildVersions()
