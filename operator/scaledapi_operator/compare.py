"""Is the desired state already there? Desired must be a subset of actual (pure)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every field of `desired` is in `actual` with the same value.

    Mappings: each desired key must match recursively; extra keys in actual (server defaults, status,
    metadata the API server adds) are ignored. A desired 0, "", [] or {} matches a key the API server
    left out, as it leaves out such values of `omitempty` fields (a probe's initialDelaySeconds: 0, an
    env var's value: ""), which would otherwise be patched again on every pass. Lists are ours entirely:
    same length, compared element-wise (so a hand-added container or env var is drift). Scalars compare
    by equality.
    """
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(
            is_subset(value, actual[key]) if key in actual else is_omitted_when_empty(value)
            for key, value in desired.items()
        )
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        if not isinstance(actual, Sequence) or isinstance(actual, str) or len(desired) != len(actual):
            return False
        return all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
    if isinstance(desired, bool) or isinstance(actual, bool):
        return isinstance(desired, bool) and isinstance(actual, bool) and desired == actual
    return bool(desired == actual)


def is_omitted_when_empty(value: Any) -> bool:
    """Whether the API server leaves `value` out of an `omitempty` field. Not false: the booleans we set
    (allowPrivilegeEscalation, runAsNonRoot) are pointers, where left out means unset, not false."""
    if isinstance(value, bool):
        return False
    return value in (0, "") or (isinstance(value, (list, dict)) and not value)


def differences(desired: Any, actual: Any, path: str = "") -> list[str]:
    """Paths where `desired` is not a subset of `actual`, for log messages."""
    if is_subset(desired, actual):
        return []
    if isinstance(desired, Mapping) and isinstance(actual, Mapping):
        found: list[str] = []
        for key, value in desired.items():
            if key not in actual:
                if not is_omitted_when_empty(value):
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


# Fields the API server fills in when a pod template's spec, a container or a Service's spec leaves them
# out (seen on the kind cluster: the e2e suite would loop on writes if one were missing here). Any other
# field in those maps that we do not set was added by hand, such as a nodeSelector or externalIPs, and is
# drift like any changed value. Server-set fields keep whatever value they have.
SERVER_SET_POD_FIELDS = frozenset(
    {"dnsPolicy", "restartPolicy", "schedulerName", "securityContext", "serviceAccount"}
    | {"terminationGracePeriodSeconds"}
)
SERVER_SET_CONTAINER_FIELDS = frozenset(
    {"imagePullPolicy", "resources", "terminationMessagePath", "terminationMessagePolicy"}
)
# The pod's securityContext is ours too (when we set one): the API server fills nothing in it, so a key we
# no longer set (the sysctl of a port below 1024, after a change back to 5252) or one added by hand
# (fsGroup) is drift, removed with null in the patch.
SERVER_SET_POD_SECURITY_FIELDS: frozenset[str] = frozenset()
SERVER_SET_SERVICE_FIELDS = frozenset(
    {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy", "sessionAffinity"}
    | {"type", "externalTrafficPolicy", "allocateLoadBalancerNodePorts", "healthCheckNodePort"}
)


def _extra_keys(desired: Any, actual: Any, server_set: frozenset[str]) -> list[str]:
    if not isinstance(desired, Mapping) or not isinstance(actual, Mapping):
        return []
    return sorted(key for key in actual if key not in desired and key not in server_set)


def _at(obj: Any, *path: str) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


Path = tuple[str | int, ...]
POD_SPEC = ("spec", "template", "spec")


def hand_added(desired: Mapping[str, Any], actual: Mapping[str, Any]) -> list[Path]:
    """Fields of a Deployment's pod template spec (its securityContext and its containers too) or of a
    Service's spec that are in
    `actual` but neither in `desired` nor set by the API server: added by hand, so drift.

    Only these maps are looked at, as they decide where and how the pods run and what the Service
    exposes; labels and annotations that others add (kubectl rollout restart's restartedAt) stay.
    """
    if desired.get("kind") == "Service":
        extras = _extra_keys(desired.get("spec"), actual.get("spec"), SERVER_SET_SERVICE_FIELDS)
        return [("spec", key) for key in extras]
    if desired.get("kind") != "Deployment":
        return []
    want, have = _at(desired, *POD_SPEC), _at(actual, *POD_SPEC)
    found: list[Path] = [(*POD_SPEC, key) for key in _extra_keys(want, have, SERVER_SET_POD_FIELDS)]
    if isinstance(_at(want, "securityContext"), Mapping):
        security = _extra_keys(
            _at(want, "securityContext"), _at(have, "securityContext"), SERVER_SET_POD_SECURITY_FIELDS
        )
        found += [(*POD_SPEC, "securityContext", key) for key in security]
    pairs = zip(_at(want, "containers") or [], _at(have, "containers") or [], strict=False)
    for index, (mine, theirs) in enumerate(pairs):
        extras = _extra_keys(mine, theirs, SERVER_SET_CONTAINER_FIELDS)
        found += [(*POD_SPEC, "containers", index, key) for key in extras]
    return found


def undo_patch(desired: Mapping[str, Any], added: list[Path]) -> dict[str, Any]:
    """`desired` as a JSON merge patch that also removes the `added` fields: null for a field of a map;
    a field inside a list element (a container) goes as `desired`'s list replaces the actual one."""
    patch: dict[str, Any] = copy.deepcopy(dict(desired))
    for path in added:
        if any(isinstance(step, int) for step in path):
            continue
        node = patch
        for step in path[:-1]:
            node = node.setdefault(str(step), {})
        node[str(path[-1])] = None
    return patch


def path_text(path: Path) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)
