"""Parsing of the API's list and watch responses for one ConfigMap (no I/O)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CONF_KEY = "nginx.conf"


@dataclass(frozen=True)
class ConfigMapState:
    name: str
    resource_version: str
    data: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str | None:
        return self.data.get(CONF_KEY)


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or ERROR
    resource_version: str | None = None
    configmap: ConfigMapState | None = None
    error_code: int | None = None
    error_message: str = ""


def _configmap(obj: Any) -> ConfigMapState:
    if not isinstance(obj, dict):
        raise ValueError("object is not a JSON object")
    meta = obj.get("metadata") or {}
    data = obj.get("data") or {}
    if not isinstance(meta, dict) or not isinstance(data, dict):
        raise ValueError("metadata or data is not a JSON object")
    return ConfigMapState(
        name=str(meta.get("name", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        data={str(k): str(v) for k, v in data.items()},
    )


def parse_watch_line(line: bytes | str) -> WatchEvent | None:
    """One line of a watch stream; None for a blank line, ValueError for anything unreadable."""
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    line = line.strip()
    if not line:
        return None
    doc = json.loads(line)
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise ValueError(f"not a watch event: {line[:200]!r}")
    kind = doc["type"]
    obj = doc.get("object") or {}
    if kind == "ERROR":
        # obj is a metav1.Status; code 410 (Gone) means the resourceVersion is too old: list again.
        code = obj.get("code") if isinstance(obj, dict) else None
        message = obj.get("message", "") if isinstance(obj, dict) else ""
        return WatchEvent(
            kind, error_code=int(code) if code is not None else None, error_message=str(message)
        )
    if kind == "BOOKMARK":
        rv = ((obj.get("metadata") or {}) if isinstance(obj, dict) else {}).get("resourceVersion")
        return WatchEvent(kind, resource_version=str(rv) if rv is not None else None)
    cm = _configmap(obj)
    return WatchEvent(kind, resource_version=cm.resource_version or None, configmap=cm)


def parse_list(body: bytes | str, name: str) -> tuple[ConfigMapState | None, str]:
    """A ConfigMapList (filtered by name): (the ConfigMap or None, the list's resourceVersion)."""
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("list response is not a JSON object")
    rv = str((doc.get("metadata") or {}).get("resourceVersion", ""))
    if not rv:
        raise ValueError("list response has no resourceVersion")
    found = None
    for item in doc.get("items") or []:
        cm = _configmap(item)
        if cm.name == name:
            found = cm
    return found, rv
