"""The ScaledApi spec, parsed into frozen dataclasses.

The CRD (manifests/crd.yaml) is the first line of defence; this parser applies the same defaults and
bounds so that the operator never acts on a spec the CRD would have refused (defence in depth).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaledapi_operator.container_spec import PRINTABLE, ContainerSpec, parse_container
from scaledapi_operator.spec_errors import SpecError
from scaledapi_proxy.zero import (
    DEFAULT_MAX_HELD_BODY_BYTES,
    DEFAULT_MAX_HELD_REQUESTS,
    HELD_MEMORY_BUDGET_BYTES,
    HELD_OVERHEAD_BYTES,
    MAX_HELD_BODY_BYTES_MAX,
    MAX_HELD_BODY_BYTES_MIN,
    MAX_HELD_REQUESTS_MAX,
    MAX_HELD_REQUESTS_MIN,
    ScaleToZero,
    held_memory_bytes,
)

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
ACCESS_LOGS = ("Buffered", "Immediate", "Off")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
_IMAGE = re.compile(rf"^{PRINTABLE}+$")  # the CRD's ^[^\s\p{Cc}\p{Z}]+$
_URL = re.compile(r"^https?://\S+$")
MAX_IMAGE_LENGTH = 512
MAX_GREETING_LENGTH = 256
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class BackendSpec:
    image: str
    image_pull_policy: str = "IfNotPresent"
    port: int = 5252
    # Deprecated: an env value of the bundled backend, not a field every API has (env GREETING).
    greeting: str | None = None
    termination_delay_seconds: int = 5
    graceful_shutdown_seconds: int = 20
    container: ContainerSpec = field(default_factory=ContainerSpec)


@dataclass(frozen=True)
class ProxySpec:
    image: str
    image_pull_policy: str = "IfNotPresent"
    replicas: int = 1
    service_type: str = "ClusterIP"
    port: int = 8080
    node_port: int | None = None
    external_url: str | None = None
    worker_processes: int = 1
    next_upstream_tries: int = 3
    upstream_timeout_seconds: int = 30
    termination_delay_seconds: int = 5
    access_log: str = "Buffered"
    metrics: bool = True  # Prometheus metrics on each nginx pod (scaledapi_proxy.metrics)


@dataclass(frozen=True)
class CanarySpec:
    """A second version of the backend that gets `weight` requests in every 100 (weights.py)."""

    image: str
    weight: int
    replicas: int = 1


@dataclass(frozen=True)
class ScaledApiSpec:
    backend: BackendSpec
    proxy: ProxySpec
    replicas: int = 1
    canary: CanarySpec | None = None
    scale_to_zero: ScaleToZero | None = None


def _section(body: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = body.get(field)
    if value is None:
        raise SpecError(field, "is required")
    if not isinstance(value, Mapping):
        raise SpecError(field, "must be an object")
    return value


def _int(section: Mapping[str, Any], prefix: str, field: str, default: int, low: int, high: int) -> int:
    value = section.get(field, default)
    # bool is an int in Python; the API never sends one for an integer field.
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(f"{prefix}{field}", f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SpecError(f"{prefix}{field}", f"must be between {low} and {high}, got {value}")
    return value


def _bool(section: Mapping[str, Any], prefix: str, field: str, default: bool) -> bool:
    value = section.get(field, default)
    if not isinstance(value, bool):
        raise SpecError(f"{prefix}{field}", f"must be true or false, got {value!r}")
    return value


def _str(section: Mapping[str, Any], prefix: str, field: str, default: str | None, max_length: int) -> str:
    value = section.get(field, default)
    if value is None:
        raise SpecError(f"{prefix}{field}", "is required")
    if not isinstance(value, str):
        raise SpecError(f"{prefix}{field}", f"must be a string, got {value!r}")
    if len(value) > max_length:
        raise SpecError(f"{prefix}{field}", f"must be at most {max_length} characters")
    return value


def _optional_str(section: Mapping[str, Any], prefix: str, field: str, max_length: int) -> str | None:
    if section.get(field) is None:
        return None
    return _str(section, prefix, field, None, max_length)


def _image(section: Mapping[str, Any], prefix: str) -> str:
    image = _str(section, prefix, "image", None, MAX_IMAGE_LENGTH)
    if not _IMAGE.fullmatch(image):
        raise SpecError(
            f"{prefix}image",
            f"must be a non-empty image reference without whitespace or control characters: {image!r}",
        )
    return image


def _choice(
    section: Mapping[str, Any], prefix: str, field: str, default: str, choices: tuple[str, ...]
) -> str:
    value = section.get(field, default)
    if value not in choices:
        raise SpecError(f"{prefix}{field}", f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _parse_backend(body: Mapping[str, Any]) -> BackendSpec:
    section = _section(body, "backend")
    p = "backend."
    return BackendSpec(
        image=_image(section, p),
        image_pull_policy=_choice(section, p, "imagePullPolicy", "IfNotPresent", PULL_POLICIES),
        port=_int(section, p, "port", 5252, 1, 65535),
        greeting=_optional_str(section, p, "greeting", MAX_GREETING_LENGTH),
        termination_delay_seconds=_int(section, p, "terminationDelaySeconds", 5, 0, 60),
        graceful_shutdown_seconds=_int(section, p, "gracefulShutdownSeconds", 20, 1, 300),
        container=parse_container(section, p),
    )


def _parse_proxy(body: Mapping[str, Any]) -> ProxySpec:
    section = _section(body, "proxy")
    p = "proxy."
    service_type = _choice(section, p, "serviceType", "ClusterIP", SERVICE_TYPES)
    node_port: int | None = None
    if section.get("nodePort") is not None:
        node_port = _int(section, p, "nodePort", 0, 30000, 32767)
        if service_type == "ClusterIP":
            raise SpecError(f"{p}nodePort", "is only allowed with serviceType NodePort or LoadBalancer")
    external_url: str | None = None
    if section.get("externalURL") is not None:
        external_url = _str(section, p, "externalURL", None, MAX_URL_LENGTH)
        if not _URL.match(external_url):
            raise SpecError(f"{p}externalURL", f"must start with http:// or https://, got {external_url!r}")
    return ProxySpec(
        image=_image(section, p),
        image_pull_policy=_choice(section, p, "imagePullPolicy", "IfNotPresent", PULL_POLICIES),
        replicas=_int(section, p, "replicas", 1, 1, 10),
        service_type=service_type,
        port=_int(section, p, "port", 8080, 1, 65535),
        node_port=node_port,
        external_url=external_url,
        worker_processes=_int(section, p, "workerProcesses", 1, 1, 8),
        next_upstream_tries=_int(section, p, "nextUpstreamTries", 3, 1, 10),
        upstream_timeout_seconds=_int(section, p, "upstreamTimeoutSeconds", 30, 1, 300),
        termination_delay_seconds=_int(section, p, "terminationDelaySeconds", 5, 0, 60),
        access_log=_choice(section, p, "accessLog", "Buffered", ACCESS_LOGS),
        metrics=_bool(section, p, "metrics", True),
    )


def _require(section: Mapping[str, Any], prefix: str, field: str) -> None:
    """A field with no default (its parser is then given a placeholder default that never applies)."""
    if section.get(field) is None:
        raise SpecError(f"{prefix}{field}", "is required")


def _parse_canary(body: Mapping[str, Any]) -> CanarySpec | None:
    if body.get("canary") is None:
        return None
    section = _section(body, "canary")
    p = "canary."
    _require(section, p, "weight")
    return CanarySpec(
        image=_image(section, p),
        weight=_int(section, p, "weight", 0, 0, 100),
        replicas=_int(section, p, "replicas", 1, 0, 50),
    )


def _parse_scale_to_zero(body: Mapping[str, Any]) -> ScaleToZero | None:
    if body.get("scaleToZero") is None:
        return None
    section = _section(body, "scaleToZero")
    p = "scaleToZero."
    _require(section, p, "idleSeconds")
    zero = ScaleToZero(
        idle_seconds=_int(section, p, "idleSeconds", 0, 5, 86400),
        wake_timeout_seconds=_int(section, p, "wakeTimeoutSeconds", 60, 1, 300),
        max_held_requests=_int(
            section,
            p,
            "maxHeldRequests",
            DEFAULT_MAX_HELD_REQUESTS,
            MAX_HELD_REQUESTS_MIN,
            MAX_HELD_REQUESTS_MAX,
        ),
        max_held_body_bytes=_int(
            section,
            p,
            "maxHeldBodyBytes",
            DEFAULT_MAX_HELD_BODY_BYTES,
            MAX_HELD_BODY_BYTES_MIN,
            MAX_HELD_BODY_BYTES_MAX,
        ),
    )
    # The CRD's rule on scaleToZero: what held requests may take stays within the nginx pod's memory.
    if held_memory_bytes(zero.max_held_requests, zero.max_held_body_bytes) > HELD_MEMORY_BUDGET_BYTES:
        raise SpecError(
            f"{p}maxHeldRequests",
            f"maxHeldRequests x (maxHeldBodyBytes + {HELD_OVERHEAD_BYTES}) must be at most "
            f"{HELD_MEMORY_BUDGET_BYTES}, got {zero.max_held_requests} x "
            f"({zero.max_held_body_bytes} + {HELD_OVERHEAD_BYTES})",
        )
    return zero


def parse_spec(body_spec: Mapping[str, Any]) -> ScaledApiSpec:
    """Parse `.spec` of a ScaledApi, applying the CRD's defaults; raise SpecError naming the field."""
    return ScaledApiSpec(
        replicas=_int(body_spec, "", "replicas", 1, 0, 50),
        backend=_parse_backend(body_spec),
        proxy=_parse_proxy(body_spec),
        canary=_parse_canary(body_spec),
        scale_to_zero=_parse_scale_to_zero(body_spec),
    )
