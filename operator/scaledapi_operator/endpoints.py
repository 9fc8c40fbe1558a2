"""Ready backend addresses from the EndpointSlices of NAME-backend (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from scaledapi_operator.nginx_conf import Endpoint

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# The backend container port's name, which the backend Service targets (builders/backend.py).
BACKEND_PORT_NAME = "http"
_ADDRESS_TYPES = ("IPv4", "IPv6")


def _sort_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def _slice_port(endpoint_slice: Mapping[str, Any], fallback: int) -> int:
    """The slice's port named BACKEND_PORT_NAME: its pods' own containerPort, which during a rollout
    that changes spec.backend.port differs between the old pods' slice and the new pods' slice."""
    for port in endpoint_slice.get("ports") or []:
        number = port.get("port")
        if port.get("name") == BACKEND_PORT_NAME and isinstance(number, int) and 0 < number < 65536:
            return number
    return fallback


def _collect(slices: Iterable[Mapping[str, Any]], fallback_port: int, condition: str) -> list[Endpoint]:
    """Endpoints whose `condition` is true, one per pod, deduplicated and sorted by address.

    A pod shows up in one slice per address family on a dual-stack cluster; its IPv4 address wins.
    """
    by_pod: dict[str, Endpoint] = {}
    loose: set[Endpoint] = set()
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType") not in _ADDRESS_TYPES:
            continue
        port = _slice_port(endpoint_slice, fallback_port)
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get(condition) is not True:
                continue
            addresses = [Endpoint(ip=a, port=port) for a in endpoint.get("addresses") or [] if a]
            if not addresses:
                continue
            target = endpoint.get("targetRef") or {}
            pod = target.get("uid") or target.get("name")
            if not pod:
                loose.update(addresses)
                continue
            candidates = [*addresses, *([by_pod[pod]] if pod in by_pod else [])]
            by_pod[pod] = min(candidates, key=lambda e: _sort_key(e.ip))
    return sorted(set(by_pod.values()) | loose, key=lambda e: (*_sort_key(e.ip), e.port))


def _ready(
    slices: Iterable[Mapping[str, Any]], fallback_port: int, *, serving_fallback: bool = True
) -> list[Endpoint]:
    """The ready endpoints; when none is ready, the serving ones, as kube-proxy does.

    A terminating pod is never ready, but it is still serving while its preStop delay runs: with one
    replica, a deleted pod keeps answering until its replacement is ready instead of leaving no
    upstream at all. Serving-but-terminating endpoints are used only while no ready one exists, and
    only with ``serving_fallback``.
    """
    slices = list(slices)
    ready = _collect(slices, fallback_port, "ready")
    return ready or (_collect(slices, fallback_port, "serving") if serving_fallback else [])


def ready_addresses(slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ready addresses (see _ready), sorted numerically."""
    return [endpoint.ip for endpoint in _ready(slices, 0)]


def ready_endpoints(
    slices: Iterable[Mapping[str, Any]], port: int, *, serving_fallback: bool = True
) -> list[Endpoint]:
    """The nginx upstream servers: every ready pod on its slice's `http` port (`port` when a slice
    names none), in a stable order. ``serving_fallback=False``: never the stopping pods (see _ready)."""
    return _ready(slices, port, serving_fallback=serving_fallback)
