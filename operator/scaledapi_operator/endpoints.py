"""Ready backend addresses from the EndpointSlices of NAME-backend (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from scaledapi_operator.nginx_conf import Endpoint

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_ADDRESS_TYPES = ("IPv4", "IPv6")


def _sort_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return (ip.version, int(ip))


def ready_addresses(slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """Addresses whose `conditions.ready` is true (terminating pods are not), deduplicated and sorted.

    A pod shows up in one slice per address family on a dual-stack cluster; its IPv4 address wins.
    """
    by_pod: dict[str, str] = {}
    loose: set[str] = set()
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType") not in _ADDRESS_TYPES:
            continue
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is not True:
                continue
            addresses = [a for a in endpoint.get("addresses") or [] if a]
            if not addresses:
                continue
            pod = (endpoint.get("targetRef") or {}).get("uid") or (endpoint.get("targetRef") or {}).get(
                "name"
            )
            if not pod:
                loose.update(addresses)
                continue
            best = min([*addresses, *([by_pod[pod]] if pod in by_pod else [])], key=_sort_key)
            by_pod[pod] = best
    return sorted(set(by_pod.values()) | loose, key=_sort_key)


def ready_endpoints(slices: Iterable[Mapping[str, Any]], port: int) -> list[Endpoint]:
    """The nginx upstream servers: every ready address on the backend port, in a stable order."""
    return [Endpoint(ip=address, port=port) for address in ready_addresses(slices)]
