"""Is the desired state already there? Desired must be a subset of actual (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every field of `desired` is in `actual` with the same value.

    Mappings: each desired key must match recursively; extra keys in actual (server defaults, status,
    metadata the API server adds) are ignored. Lists are ours entirely: same length, compared
    element-wise (so a hand-added container or env var is drift). Scalars compare by equality.
    """
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(key in actual and is_subset(value, actual[key]) for key, value in desired.items())
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        if not isinstance(actual, Sequence) or isinstance(actual, str) or len(desired) != len(actual):
            return False
        return all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
    if isinstance(desired, bool) or isinstance(actual, bool):
        return isinstance(desired, bool) and isinstance(actual, bool) and desired == actual
    return bool(desired == actual)


def differences(desired: Any, actual: Any, path: str = "") -> list[str]:
    """Paths where `desired` is not a subset of `actual`, for log messages."""
    if is_subset(desired, actual):
        return []
    if isinstance(desired, Mapping) and isinstance(actual, Mapping):
        found: list[str] = []
        for key, value in desired.items():
            if key not in actual:
                found.append(f"{path}.{key} (missing)")
            else:
                found.extend(differences(value, actual[key], f"{path}.{key}"))
        return found
    if (
        isinstance(desired, Sequence)
        and isinstance(actual, Sequence)
        and not isinstance(desired, str)
        and not isinstance(actual, str)
        and len(desired) == len(actual)
    ):
        found = []
        for index, (d, a) in enumerate(zip(desired, actual, strict=True)):
            found.extend(differences(d, a, f"{path}[{index}]"))
        return found
    return [path or "."]
