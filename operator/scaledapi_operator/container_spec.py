"""The container-shaped fields of spec.backend that let any HTTP API image run unchanged: how to start
it (command, args, env, envFrom, workingDir), how to tell it is ready or alive, its resources and its
security context. Parsed into frozen dataclasses; each error names the field (SpecError).

The CRD refuses the same input first; this parser is the defence in depth, and the one place that
applies defaults the CRD cannot express (the liveness check follows the readiness check's type, TCP
after an Exec readiness check).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scaledapi_operator.spec_errors import SpecError

HTTP = "HTTP"
TCP = "TCP"
EXEC = "Exec"
NO_CHECK = "None"
READINESS_TYPES = (HTTP, TCP, EXEC)
LIVENESS_TYPES = (HTTP, TCP, NO_CHECK)
DEFAULT_CHECK_PATH = "/healthz"
MAX_ARGUMENTS = 64
MAX_ARGUMENT_LENGTH = 4096
MAX_ENV = 128
MAX_ENV_VALUE_LENGTH = 32768
MAX_ENV_FROM = 16
MAX_PATH_LENGTH = 1024
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
# An environment variable name as Kubernetes accepts it (any printable ASCII but '='; we keep it to the
# portable set, which is what shells and every language runtime can read).
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# A Kubernetes quantity: a decimal number with an optional binary or decimal suffix or exponent (never
# negative: an integer given as a number is checked as its text, "-1" fails).
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+|[KMGTPE]i|[mkMGTPE])?$")
MAX_QUANTITY_LENGTH = 64


def is_quantity(amount: Any) -> bool:
    """A non-negative quantity, as the CRD's int-or-string schema (pattern, minimum 0, maxLength) allows."""
    if isinstance(amount, bool) or not isinstance(amount, (int, str)):
        return False
    return len(str(amount)) <= MAX_QUANTITY_LENGTH and QUANTITY.match(str(amount)) is not None


# One character that is neither whitespace nor a control character: what an image reference and a check's
# path are made of. The CRD says it in Go's RE2 (CRD_PRINTABLE); Python's \s covers \p{Z}, and \p{Cc} is
# the C0 and C1 controls, so both refuse the same characters (tests/unit/test_crd.py compares them).
PRINTABLE = r"[^\s\x00-\x1f\x7f-\x9f]"
CRD_PRINTABLE = r"[^\s\p{Cc}\p{Z}]"
CHECK_PATH = re.compile(rf"^/{PRINTABLE}*$")
DEFAULT_USER = 10001
# Today's values, sized for the bundled Flask backend under gunicorn.
DEFAULT_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "256Mi"},
}


@dataclass(frozen=True)
class Check:
    """A readiness or liveness check: an HTTP GET of `path` or a TCP connect on the backend's port, or
    (readiness only) `command` run in the container, ready when it exits 0."""

    type: str
    path: str = DEFAULT_CHECK_PATH
    initial_delay_seconds: int = 0
    period_seconds: int = 2
    failure_threshold: int = 2
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SecuritySpec:
    run_as_user: int = DEFAULT_USER
    run_as_group: int = DEFAULT_USER
    run_as_non_root: bool = True
    read_only_root_filesystem: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """How the backend container starts and is checked; None/empty keeps the image's own settings."""

    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    working_dir: str | None = None
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    readiness: Check = field(default_factory=lambda: Check(HTTP))
    liveness: Check = field(default_factory=lambda: Check(HTTP, period_seconds=10, failure_threshold=3))
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: DEFAULT_RESOURCES)
    security: SecuritySpec = field(default_factory=SecuritySpec)


def _strings(section: Mapping[str, Any], path: str, name: str) -> tuple[str, ...] | None:
    value = section.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ARGUMENTS:
        raise SpecError(f"{path}{name}", f"must be a list of at most {MAX_ARGUMENTS} strings")
    for index, item in enumerate(value):
        if not isinstance(item, str) or len(item) > MAX_ARGUMENT_LENGTH:
            raise SpecError(f"{path}{name}[{index}]", f"must be a string of at most {MAX_ARGUMENT_LENGTH}")
    return tuple(value)


def _int(section: Mapping[str, Any], path: str, name: str, default: int, low: int, high: int) -> int:
    value = section.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SpecError(f"{path}{name}", f"must be an integer between {low} and {high}, got {value!r}")
    return value


def _bool(section: Mapping[str, Any], path: str, name: str, default: bool) -> bool:
    value = section.get(name, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}{name}", f"must be true or false, got {value!r}")
    return value


def _object(section: Mapping[str, Any], path: str, name: str) -> Mapping[str, Any]:
    value = section.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}{name}", "must be an object")
    return value


def _check(section: Mapping[str, Any], path: str, defaults: Check, types: tuple[str, ...]) -> Check:
    kind = section.get("type", defaults.type)
    if kind not in types:
        raise SpecError(f"{path}type", f"must be one of {', '.join(types)}, got {kind!r}")
    command = _strings(section, path, "command") if EXEC in types else None
    if (command is not None) != (kind == EXEC):
        raise SpecError(f"{path}command", "is required with type Exec and allowed only with it")
    if command == ():
        raise SpecError(f"{path}command", "must name the command to run")
    check_path = section.get("path", defaults.path)
    if (
        not isinstance(check_path, str)
        or not CHECK_PATH.fullmatch(check_path)
        or len(check_path) > MAX_PATH_LENGTH
    ):
        raise SpecError(
            f"{path}path",
            f"must be an absolute URL path such as /healthz, without whitespace, got {check_path!r}",
        )
    return Check(
        type=str(kind),
        path=check_path,
        initial_delay_seconds=_int(
            section, path, "initialDelaySeconds", defaults.initial_delay_seconds, 0, 600
        ),
        period_seconds=_int(section, path, "periodSeconds", defaults.period_seconds, 1, 300),
        failure_threshold=_int(section, path, "failureThreshold", defaults.failure_threshold, 1, 30),
        command=command,
    )


def _env(section: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], ...]:
    value = section.get("env") or []
    if not isinstance(value, list) or len(value) > MAX_ENV:
        raise SpecError(f"{path}env", f"must be a list of at most {MAX_ENV} variables")
    for index, item in enumerate(value):
        where = f"{path}env[{index}]"
        if not isinstance(item, Mapping) or not ENV_NAME.match(str(item.get("name", ""))):
            raise SpecError(f"{where}.name", "must be a variable name: a letter or '_', then [A-Za-z0-9_.-]")
        if ("value" in item) == ("valueFrom" in item):
            raise SpecError(where, "needs exactly one of value and valueFrom")
        if "value" in item and (
            not isinstance(item["value"], str) or len(item["value"]) > MAX_ENV_VALUE_LENGTH
        ):
            raise SpecError(f"{where}.value", "must be a string (quote numbers and booleans)")
        if "valueFrom" in item and not isinstance(item["valueFrom"], Mapping):
            raise SpecError(f"{where}.valueFrom", "must be an object")
        divisor = ((item.get("valueFrom") or {}).get("resourceFieldRef") or {}).get("divisor")
        if divisor is not None and not is_quantity(divisor):
            raise SpecError(
                f"{where}.valueFrom.resourceFieldRef.divisor",
                f"must be a quantity such as 1Mi, got {divisor!r}",
            )
    return tuple(dict(item) for item in value)


def _env_from(section: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], ...]:
    value = section.get("envFrom") or []
    if not isinstance(value, list) or len(value) > MAX_ENV_FROM:
        raise SpecError(f"{path}envFrom", f"must be a list of at most {MAX_ENV_FROM} sources")
    for index, item in enumerate(value):
        refs = [key for key in ("configMapRef", "secretRef") if isinstance(item, Mapping) and key in item]
        if len(refs) != 1:
            raise SpecError(f"{path}envFrom[{index}]", "needs exactly one of configMapRef and secretRef")
    return tuple(dict(item) for item in value)


def _resources(section: Mapping[str, Any], path: str) -> Mapping[str, Mapping[str, str]]:
    if section.get("resources") is None:
        return DEFAULT_RESOURCES
    given = _object(section, path, "resources")
    result: dict[str, dict[str, str]] = {}
    for group in ("requests", "limits"):
        amounts = _object(given, f"{path}resources.", group)
        for name, amount in amounts.items():
            where = f"{path}resources.{group}.{name}"
            if name not in RESOURCE_NAMES:
                raise SpecError(where, f"must be one of {', '.join(RESOURCE_NAMES)}")
            if not is_quantity(amount):
                raise SpecError(where, f"must be a quantity such as 500m, 1 or 256Mi, got {amount!r}")
            result.setdefault(group, {})[name] = str(amount)
    return result


def _security(section: Mapping[str, Any], path: str) -> SecuritySpec:
    given = _object(section, path, "securityContext")
    where = f"{path}securityContext."
    security = SecuritySpec(
        run_as_user=_int(given, where, "runAsUser", DEFAULT_USER, 0, 2147483647),
        run_as_group=_int(given, where, "runAsGroup", DEFAULT_USER, 0, 2147483647),
        run_as_non_root=_bool(given, where, "runAsNonRoot", True),
        read_only_root_filesystem=_bool(given, where, "readOnlyRootFilesystem", True),
    )
    if security.run_as_non_root and security.run_as_user == 0:
        raise SpecError(f"{where}runAsUser", "0 (root) needs runAsNonRoot: false")
    return security


def parse_container(section: Mapping[str, Any], path: str) -> ContainerSpec:
    """The container fields of `section` (spec.backend), whose path prefix is `path` ("backend.")."""
    working_dir = section.get("workingDir")
    if working_dir is not None and (not isinstance(working_dir, str) or not working_dir.startswith("/")):
        raise SpecError(f"{path}workingDir", f"must be an absolute path, got {working_dir!r}")
    readiness = _check(_object(section, path, "readiness"), f"{path}readiness.", Check(HTTP), READINESS_TYPES)
    # The liveness check follows the readiness check unless told otherwise: an API without /healthz
    # that is checked by TCP for readiness is not killed by an HTTP liveness check it cannot pass. A
    # command is no liveness check: after an Exec readiness check the copy is restarted only when its
    # port stops accepting connections.
    follows = TCP if readiness.type == EXEC else readiness.type
    liveness_defaults = Check(follows, readiness.path, period_seconds=10, failure_threshold=3)
    liveness = _check(
        _object(section, path, "liveness"), f"{path}liveness.", liveness_defaults, LIVENESS_TYPES
    )
    return ContainerSpec(
        command=_strings(section, path, "command"),
        args=_strings(section, path, "args"),
        working_dir=working_dir,
        env=_env(section, path),
        env_from=_env_from(section, path),
        readiness=readiness,
        liveness=liveness,
        resources=_resources(section, path),
        security=_security(section, path),
    )
