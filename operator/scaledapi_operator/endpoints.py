"""Ready backend addresses from the EndpointSlices of NAME-backend (pure).

Only the slices that Kubernetes' EndpointSlice controller wrote count: anyone who may create an
EndpointSlice in the namespace can label one `kubernetes.io/service-name=NAME-backend`, and its
addresses must not become nginx upstreams. Each address is parsed and must be of its slice's family; an
IPv6 address with a zone (`fe80::1%eth0`) is refused, so that nothing but a plain address reaches
nginx.conf.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from scaledapi_operator.nginx_conf import Endpoint

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# Who wrote a slice: the control plane's EndpointSlice controller sets this on every slice it manages.
SLICE_MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"
# The backend container port's name, which the backend Service targets (builders/backend.py).
BACKEND_PORT_NAME = "http"
_ADDRESS_TYPES = {"IPv4": 4, "IPv6": 6}


def is_controller_slice(endpoint_slice: Mapping[str, Any]) -> bool:
    """Whether the EndpointSlice controller wrote this slice (a slice made by hand or by another
    controller, whatever its service-name label says, is not one of our Service's)."""
    labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
    return isinstance(labels, Mapping) and labels.get(SLICE_MANAGED_BY_LABEL) == SLICE_CONTROLLER


def foreign_slices(slices: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The slices that are ignored because the EndpointSlice controller did not write them."""
    return [s for s in slices if not is_controller_slice(s)]


def valid_address(address: Any, version: int) -> str | None:
    """`address` as a plain IP address of `version` (4 or 6) in its canonical text, or None: not a
    string, not an address, of the other family, or an IPv6 address with a zone id (`%eth0`)."""
    if not isinstance(address, str):
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version != version or (isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None):
        return None
    return str(ip)


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
    """Endpoints whose `condition` is true, one per pod, deduplicated and sorted by address, from the
    slices the EndpointSlice controller wrote; an address that is not valid_address is skipped.

    A pod shows up in one slice per address family on a dual-stack cluster; its IPv4 address wins.
    """
    by_pod: dict[str, Endpoint] = {}
    loose: set[Endpoint] = set()
    for endpoint_slice in slices:
        version = _ADDRESS_TYPES.get(str(endpoint_slice.get("addressType")))
        if version is None or not is_controller_slice(endpoint_slice):
            continue
        port = _slice_port(endpoint_slice, fallback_port)
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get(condition) is not True:
                continue
            valid = (valid_address(a, version) for a in endpoint.get("addresses") or [])
            addresses = [Endpoint(ip=a, port=port) for a in valid if a is not None]
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
