"""How the scaled service of a docker compose file maps onto spec.backend and spec.replicas, and what
of the proxy's nginx config cannot carry over. Pure functions: no file is read here.

Every mapping function takes the compose value and its dotted path in the file (services.back-end.user),
returns the ScaledApi value, and appends a ComposeWarning for what it cannot carry over. A value compose
itself would refuse, or one that leaves nothing to convert, raises ComposeError naming the path.
backend_spec() puts the backend together (compose_health.py maps its healthcheck); from_compose.py adds
the proxy, the files (compose_files.py) and the command line.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from scaledapi_operator.compose_health import health_checks
from scaledapi_operator.compose_values import (
    ComposeError,
    ComposeWarning,
    as_list,
    as_mapping,
    scalar_text,
    shown,
    whole_number,
)
from scaledapi_operator.container_spec import DEFAULT_USER, ENV_NAME

MAX_PORT = 65535
MAX_REPLICAS = 50
MAX_ID = 2147483647  # runAsUser and runAsGroup, as the CRD bounds them
MAX_CPUS = 4096
MAX_BYTES = 2**63 - 1  # the largest quantity Kubernetes holds
ROOT_NAMES = ("0", "root")
# nginx blocks (http { server { location { ... } } }) nested deeper than this are refused.
MAX_NGINX_DEPTH = 32
# Compose byte units (b, k, kb, m, mb, ...) are powers of 1024: "256M" is 256 MiB, Kubernetes' "256Mi".
_BYTES = re.compile(r"(?P<amount>[0-9]{1,30}(\.[0-9]{1,30})?)\s*(?P<unit>[bkmgtp])?b?", re.IGNORECASE)
_BINARY_SUFFIX = {"b": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti", "p": "Pi"}
_BINARY_POWER = {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
# What compose would substitute: $NAME, ${...} and a lone $ (which it refuses); $$ is its escape.
_INTERPOLATION = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*|\{[^}]*\}|)")
# Directives of an nginx server block that ScaledApi's generated config has its own version of.
_SERVER_BASICS = ("listen", "server_name")
_NGINX_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)|"(?P<double>(?:\\.|[^"\\])*)"|'(?P<single>(?:\\.|[^'\\])*)'"""
    r"""|(?P<punctuation>[{};])|(?P<word>[^\s{};"'\#][^\s{};"']*)"""
)


@dataclass(frozen=True)
class PortEntry:
    """One `ports:` or `expose:` entry: the container side and, for ports, the published host side."""

    container: str
    published: str | None = None


def command_line(value: Any, field: str, image_part: str, warnings: list[ComposeWarning]) -> list[str] | None:
    """entrypoint -> command, command -> args: a string is split as a shell would, a list is kept."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as error:
            raise ComposeError(field, f"cannot be split into words: {error}") from None
    else:
        words = [scalar_text(word, f"{field}[{index}]") for index, word in enumerate(as_list(value, field))]
    if not words:
        warnings.append(
            ComposeWarning(
                field,
                f"empty: compose clears the image's {image_part} with it, Kubernetes keeps the image's "
                "(write the whole command line in entrypoint instead)",
            )
        )
        return None
    return words


def environment(value: Any, field: str, warnings: list[ComposeWarning]) -> dict[str, str]:
    """The list form ("A=x", bare "A") or the map form; a later entry of the same name wins, as in compose."""
    entries: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        entries = [(str(name), raw) for name, raw in value.items()]
    else:
        for index, entry in enumerate(as_list(value, field)):
            name, equals, raw = scalar_text(entry, f"{field}[{index}]").partition("=")
            entries.append((name, raw if equals else None))
    result: dict[str, str] = {}
    for name, raw in entries:
        where = f"{field}.{name}"
        if raw is None:
            hint = "no value in the file, compose takes it from the shell (write it in the file, or in a "
            hint += "Secret or ConfigMap for spec.backend.env valueFrom or envFrom)"
            warnings.append(ComposeWarning(where, hint))
        elif not ENV_NAME.match(name):
            hint = "not a variable name Kubernetes accepts here (a letter or '_', then [A-Za-z0-9_.-])"
            warnings.append(ComposeWarning(where, hint))
        else:
            result[name] = scalar_text(raw, where)
    return result


def security_context(value: Any, field: str, warnings: list[ComposeWarning]) -> dict[str, Any] | None:
    """`user: UID[:GID]` -> runAsUser/runAsGroup (GID defaults to UID); names cannot be mapped."""
    if value is None:
        return None
    user, _, group = scalar_text(value, field).partition(":")
    uid, gid = whole_number(user, field, MAX_ID), whole_number(group, field, MAX_ID)
    if user in ROOT_NAMES:
        hint = 'runAsUser 0 with runAsNonRoot false: the pods leave Pod Security "restricted", whose '
        hint += "namespaces refuse them (drop user: to run as ScaledApi's non-root uid if the files allow it)"
        warnings.append(ComposeWarning(field, hint, not_mapped=False))
        return {"runAsUser": 0, "runAsGroup": gid or 0, "runAsNonRoot": False}
    if uid is None:
        hint = f"{user!r} is a user name and Kubernetes needs a number (docker run --rm --entrypoint id "
        hint += f"IMAGE -u {user}); the pods run as uid {DEFAULT_USER} unless you set "
        hint += "spec.backend.securityContext.runAsUser"
        warnings.append(ComposeWarning(field, hint))
        return None
    context = {"runAsUser": uid}
    if group == "" or gid is not None:
        context["runAsGroup"] = uid if gid is None else gid
    else:
        hint = f"group {group!r} is a name and Kubernetes needs a number; runAsGroup keeps its default"
        warnings.append(ComposeWarning(field, hint))
    return context


def cpu_quantity(value: Any, field: str) -> str:
    """Compose's cpus "0.5" -> Kubernetes' "500m"; one that is not finite (1e400, inf, nan) is refused."""
    try:
        cpus = float(scalar_text(value, field))
    except ValueError:
        cpus = math.nan
    millicores = round(cpus * 1000) if math.isfinite(cpus) and 0 < cpus <= MAX_CPUS else 0
    if millicores <= 0:
        problem = f"must be a positive number of CPUs up to {MAX_CPUS}, such as 0.5, got {shown(value)}"
        raise ComposeError(field, problem)
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def memory_quantity(value: Any, field: str) -> str:
    """Compose's "256M" (or m, mb, MB) -> Kubernetes' "256Mi"; a bare number is bytes."""
    match = _BYTES.fullmatch(scalar_text(value, field).strip())
    if match is None:
        raise ComposeError(field, f"must be a byte value such as 256M or 1g, got {shown(value)}")
    unit = (match["unit"] or "b").lower()
    if Decimal(match["amount"]) * 1024 ** _BINARY_POWER[unit] > MAX_BYTES:
        raise ComposeError(field, f"{shown(value)} is more than {MAX_BYTES} bytes")
    return match["amount"] + _BINARY_SUFFIX[unit]


def resources(deploy: Mapping[str, Any], field: str, warnings: list[ComposeWarning]) -> dict[str, Any] | None:
    """deploy.resources: limits -> limits, reservations -> requests (cpus and memory only)."""
    where = f"{field}.resources"
    given = as_mapping(deploy.get("resources"), where)
    result: dict[str, dict[str, str]] = {}
    for compose_group, group in (("limits", "limits"), ("reservations", "requests")):
        for name, amount in as_mapping(given.get(compose_group), f"{where}.{compose_group}").items():
            at = f"{where}.{compose_group}.{name}"
            if name == "cpus":
                result.setdefault(group, {})["cpu"] = cpu_quantity(amount, at)
            elif name == "memory":
                result.setdefault(group, {})["memory"] = memory_quantity(amount, at)
            else:
                warnings.append(ComposeWarning(at, "only cpus and memory have a ScaledApi field"))
    for name in given:
        if name not in ("limits", "reservations"):
            warnings.append(ComposeWarning(f"{where}.{name}", "only limits and reservations are read"))
    return result or None


def port_entry(value: Any, field: str) -> PortEntry:
    """A short ("8000:5000", "127.0.0.1:8000:5000/tcp", "5000") or long ({target, published}) entry."""
    if isinstance(value, Mapping):
        if value.get("target") is None:
            raise ComposeError(f"{field}.target", "required")
        published = value.get("published")
        return PortEntry(
            scalar_text(value["target"], f"{field}.target"),
            None if published is None else scalar_text(published, f"{field}.published"),
        )
    text = scalar_text(value, field).split("/", 1)[0]
    host, _, container = text.rpartition(":")
    # The host side may carry an address ("127.0.0.1:8000", "[::1]:8000"): the port is after its last ':'.
    published = host.rpartition(":")[2] if host else None
    return PortEntry(container, published or None)


def single_port(text: str, field: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 1 <= int(text) <= MAX_PORT:
        raise ComposeError(field, f"{shown(text)} is not a single port between 1 and {MAX_PORT}")
    return int(text)


def interpolations(value: Any, field: str) -> list[ComposeWarning]:
    """A warning for each string under `value` in which compose would have substituted a variable."""
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in interpolations(item, f"{field}.{key}")]
    if isinstance(value, list):
        return [
            found for index, item in enumerate(value) for found in interpolations(item, f"{field}[{index}]")
        ]
    if isinstance(value, str) and any(match[1] != "$" for match in _INTERPOLATION.finditer(value)):
        fix = ", or give the image with --image" if field.endswith(".image") else ""
        hint = f"{value!r} is left as written; compose would have interpolated it from the shell or .env "
        return [ComposeWarning(field, f"{hint}(write the value in the file{fix})", not_mapped=False)]
    return []


@dataclass(frozen=True)
class ProxiedPort:
    """The port the proxy's nginx config sends the service's requests to, and the mount that says so."""

    field: str  # services.nginx.volumes[0]
    source: str  # ./nginx.conf
    port: int


def backend_port(
    service: Mapping[str, Any],
    field: str,
    env: Mapping[str, str],
    warnings: list[ComposeWarning],
    override: int | None = None,
    proxied: ProxiedPort | None = None,
) -> int:
    """The API's container port: `override` (--port), else expose[0], else the container side of ports[0],
    else the port the proxy's nginx config sends it requests on, else a numeric PORT."""
    exposed = as_list(service.get("expose"), f"{field}.expose")
    published = as_list(service.get("ports"), f"{field}.ports")
    if override is not None:
        port = override
    elif exposed:
        port = single_port(port_entry(exposed[0], f"{field}.expose[0]").container, f"{field}.expose[0]")
    elif published:
        port = single_port(port_entry(published[0], f"{field}.ports[0]").container, f"{field}.ports[0]")
    elif proxied is not None:
        port = proxied.port
        said = f"{proxied.source}: spec.backend.port {port} is the port its proxy_pass sends {field} to "
        said += "(which has no expose or ports)"
        warnings.append(ComposeWarning(proxied.field, said, not_mapped=False))
    elif re.fullmatch(r"[0-9]+", env.get("PORT", "")):
        port = single_port(env["PORT"], f"{field}.environment.PORT")
    else:
        problem = "required: no expose, ports, proxy_pass in the proxy's nginx config or numeric PORT in "
        problem += 'environment tells the API\'s port (add expose: ["5000"] with its port, or give --port)'
        raise ComposeError(f"{field}.expose", problem)
    one_port = f"the backend has one port, spec.backend.port: {port}"
    for index, entry in enumerate(exposed):
        if port_entry(entry, f"{field}.expose[{index}]").container != str(port):
            warnings.append(ComposeWarning(f"{field}.expose[{index}]", one_port))
    for index, entry in enumerate(published):
        parsed = port_entry(entry, f"{field}.ports[{index}]")
        if parsed.container != str(port):
            warnings.append(ComposeWarning(f"{field}.ports[{index}]", one_port))
        elif parsed.published is not None:
            hint = f"host port {parsed.published}: the copies are not published, callers reach them "
            warnings.append(ComposeWarning(f"{field}.ports[{index}]", hint + "through the proxy"))
    return port


# Fields a converted service has no use for, and what to do instead. Any other field gets the default.
_NO_STATE = "not supported: the backend copies are identical and stateless"
_NO_DNS = "not supported: the pods use the cluster's DNS"
_ONE_NETWORK = "every pod is on the cluster network; reach other services by their Kubernetes Service names"
_RESTRICTED = 'not allowed by Pod Security "restricted", which the pods meet'
_RESOURCES = "use deploy.resources (limits and reservations), or set spec.backend.resources"
_RESTARTS = "Kubernetes restarts containers itself"
_HINTS = {
    "volumes": _NO_STATE,
    "volumes_from": _NO_STATE,
    "tmpfs": _NO_STATE + " (/tmp is an emptyDir already)",
    "configs": "not supported: ScaledApi mounts no files (bake them into the image)",
    "secrets": "put them in a Secret and use spec.backend.envFrom or env valueFrom",
    "env_file": "put it in a ConfigMap and use spec.backend.envFrom",
    "networks": _ONE_NETWORK,
    "network_mode": _ONE_NETWORK,
    "links": _ONE_NETWORK,
    "external_links": _ONE_NETWORK,
    "extra_hosts": _NO_DNS,
    "dns": _NO_DNS,
    "dns_search": _NO_DNS,
    "dns_opt": _NO_DNS,
    "restart": _RESTARTS,
    "depends_on": "Kubernetes starts pods in no order; a copy gets traffic once its readiness check passes",
    "container_name": "conflicts with scaling: each copy is a pod with its own name",
    "hostname": "conflicts with scaling: each copy's hostname is its pod name",
    "profiles": "compose only: a ScaledApi always runs",
    "labels": "no ScaledApi field for container labels",
    "stop_grace_period": "set spec.backend.gracefulShutdownSeconds",
    "stop_signal": "Kubernetes sends SIGTERM: the API must stop on it",
    "pull_policy": "set spec.backend.imagePullPolicy",
    "init": "no init process: the API is PID 1 and must stop on SIGTERM",
    "logging": "Kubernetes keeps the container's stdout and stderr",
    "privileged": _RESTRICTED,
    "cap_add": _RESTRICTED,
    "security_opt": _RESTRICTED,
    "cap_drop": "ScaledApi drops every capability already",
    "cpus": _RESOURCES,
    "mem_limit": _RESOURCES,
    "mem_reservation": _RESOURCES,
    "extends": "the extended service is not read: merge its fields into this one first",
    "read_only": "the root filesystem is read-only in ScaledApi; if the API writes outside /tmp, set "
    "spec.backend.securityContext.readOnlyRootFilesystem: false",
}
_DEPLOY_HINTS = {
    "restart_policy": _RESTARTS,
    "update_config": "ScaledApi rolls out one new copy at a time, never below the desired count",
    "rollback_config": "ScaledApi rolls out one new copy at a time, never below the desired count",
}
_DEFAULT_HINT = "no ScaledApi field for it"
_STARTUP_KEYS = ("image", "command", "entrypoint", "working_dir", "environment", "user", "healthcheck")
_SCALING_KEYS = ("expose", "ports", "deploy", "scale")
MAPPED_KEYS = frozenset((*_STARTUP_KEYS, *_SCALING_KEYS))


def unmapped_keys(service: Mapping[str, Any], field: str, image: str) -> list[ComposeWarning]:
    """A warning for each field of the service that has no place in the ScaledApi, with what to do."""
    hints = {
        **_HINTS,
        "build": f"ScaledApi runs an image and builds none: {image} is used (build and push or load it)",
    }
    found = [
        ComposeWarning(f"{field}.{key}", hints.get(key, _DEFAULT_HINT))
        for key, value in service.items()
        if key not in MAPPED_KEYS and not (key == "read_only" and value is True)
    ]
    deploy = as_mapping(service.get("deploy"), f"{field}.deploy")
    found += [
        ComposeWarning(f"{field}.deploy.{key}", _DEPLOY_HINTS.get(key, _DEFAULT_HINT))
        for key in deploy
        if key not in ("replicas", "resources")
    ]
    return found


def backend_image(service: Mapping[str, Any], field: str) -> str:
    image = service.get("image")
    if image is None and "build" in service:
        hint = "the service has only build:; build and push the image, then give its name with --image"
        raise ComposeError(f"{field}.image", f"required ({hint})")
    if not isinstance(image, str) or not image.strip():
        raise ComposeError(f"{field}.image", "required: an image name (or give one with --image)")
    return image


def working_dir(service: Mapping[str, Any], field: str, warnings: list[ComposeWarning]) -> str | None:
    if service.get("working_dir") is None:
        return None
    path = scalar_text(service["working_dir"], field)
    if not path.startswith("/"):
        warnings.append(ComposeWarning(field, f"{path!r}: Kubernetes needs an absolute path"))
        return None
    return path


def backend_spec(
    service: Mapping[str, Any],
    field: str,
    image: str | None,
    warnings: list[ComposeWarning],
    port: int | None = None,
    proxied: ProxiedPort | None = None,
) -> dict[str, Any]:
    """spec.backend from the scaled service; `image` (--image) and `port` (--port) replace the service's;
    `proxied` is the port the proxy's nginx config names, for a service that names none itself."""
    image = image or backend_image(service, field)
    env = environment(service.get("environment"), f"{field}.environment", warnings)
    port = backend_port(service, field, env, warnings, port, proxied)
    deploy = as_mapping(service.get("deploy"), f"{field}.deploy")
    checks = health_checks(service.get("healthcheck"), f"{field}.healthcheck", port, warnings)
    spec = {
        "image": image,
        "port": port,
        # Compose's entrypoint and command are the image's ENTRYPOINT and CMD: Kubernetes' command and args.
        "command": command_line(service.get("entrypoint"), f"{field}.entrypoint", "ENTRYPOINT", warnings),
        "args": command_line(service.get("command"), f"{field}.command", "CMD", warnings),
        "workingDir": working_dir(service, f"{field}.working_dir", warnings),
        "env": [{"name": name, "value": value} for name, value in env.items()] or None,
        # From the healthcheck when there is one; else a TCP connect, the only check known to pass.
        "readiness": checks.readiness,
        "liveness": checks.liveness,
        "securityContext": security_context(service.get("user"), f"{field}.user", warnings),
        "resources": resources(deploy, f"{field}.deploy", warnings),
    }
    warnings += unmapped_keys(service, field, image)
    return {key: value for key, value in spec.items() if value is not None}


def replicas(service: Mapping[str, Any], field: str, override: int | None) -> int:
    """--replicas, else deploy.replicas, else scale, else 1."""
    deploy = as_mapping(service.get("deploy"), f"{field}.deploy")
    if override is not None:
        value, where = override, "--replicas"
    elif deploy.get("replicas") is not None:
        value, where = deploy["replicas"], f"{field}.deploy.replicas"
    elif service.get("scale") is not None:
        value, where = service["scale"], f"{field}.scale"
    else:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REPLICAS:
        raise ComposeError(where, f"must be a whole number from 0 to {MAX_REPLICAS}, got {shown(value)}")
    return value


# The nginx config the proxy service mounts: ScaledApi generates its own, so say what is lost.


@dataclass(frozen=True)
class Directive:
    """One nginx directive; `block` is the content of its { } when it has one."""

    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...] | None = None


class NginxTooDeepError(ValueError):
    """An nginx config whose blocks nest deeper than MAX_NGINX_DEPTH: not one nginx users write."""


def _nginx_block(tokens: Iterator[tuple[bool, str]], depth: int) -> tuple[Directive, ...]:
    nested = depth > 0
    directives: list[Directive] = []
    words: list[str] = []
    for is_punctuation, text in tokens:
        if not is_punctuation:
            words.append(text)
            continue
        if text == "}":
            if not nested or words:
                raise ValueError("unexpected }")
            return tuple(directives)
        if not words:
            raise ValueError(f"unexpected {text}")
        if text == "{" and depth >= MAX_NGINX_DEPTH:
            raise NginxTooDeepError(f"blocks nested deeper than {MAX_NGINX_DEPTH}")
        inner = _nginx_block(tokens, depth + 1) if text == "{" else None
        directives.append(Directive(words[0], tuple(words[1:]), inner))
        words = []
    if nested or words:
        raise ValueError("unexpected end of file")
    return tuple(directives)


def parse_nginx(text: str) -> tuple[Directive, ...]:
    """The directives of an nginx config, comments dropped and quotes removed; ValueError if unbalanced,
    NginxTooDeepError (a ValueError) past MAX_NGINX_DEPTH nested blocks."""
    tokens = (
        (match.lastgroup == "punctuation", match[match.lastgroup or 0])
        for match in _NGINX_TOKEN.finditer(text)
        if match.lastgroup != "comment"
    )
    return _nginx_block(tokens, depth=0)


def _walk(directives: tuple[Directive, ...]) -> Iterator[Directive]:
    for directive in directives:
        yield directive
        yield from _walk(directive.block or ())


def _spelled(directive: Directive) -> str:
    return " ".join((directive.name, *directive.args))


def _passes(directive: Directive, targets: set[str]) -> bool:
    """Whether the directive is a plain proxy_pass to one of `targets`."""
    return (
        directive.name == "proxy_pass"
        and len(directive.args) == 1
        and directive.args[0].rstrip("/") in targets
    )


# proxy_pass http://HOST[:PORT][/URI]; a variable in the host is not followed.
_HTTP_TARGET = re.compile(r"http://(?P<host>[^/:$\s]+)(?::(?P<port>[0-9]{1,5}))?(?:/.*)?", re.DOTALL)
_DEFAULT_HTTP_PORT = 80


def _server_address(text: str) -> tuple[str, int | None]:
    """An upstream server's host and port: "api:5000" -> ("api", 5000), "api" -> ("api", 80)."""
    host, colon, port = text.rpartition(":")
    if not colon or "]" in port:
        return text, _DEFAULT_HTTP_PORT
    return host, int(port) if re.fullmatch(r"[0-9]{1,5}", port) else None


def proxied_ports(directives: tuple[Directive, ...], service: str) -> set[int]:
    """The ports an nginx config's proxy_pass sends requests for `service` to, directly (proxy_pass
    http://api:5000) or through an upstream block naming it (server api:5000); 80 when none is given."""
    upstreams = {
        found.args[0]: found.block or ()
        for found in _walk(directives)
        if found.name == "upstream" and found.block is not None and len(found.args) == 1
    }
    ports: set[int | None] = set()
    for directive in _walk(directives):
        target = _HTTP_TARGET.fullmatch(directive.args[0]) if len(directive.args) == 1 else None
        if directive.name != "proxy_pass" or target is None:
            continue
        if target["port"] is None and target["host"] in upstreams:
            servers = [_server_address(inner.args[0]) for inner in upstreams[target["host"]] if inner.args]
            ports |= {port for host, port in servers if host == service}
        elif target["host"] == service:
            ports.add(int(target["port"]) if target["port"] else _DEFAULT_HTTP_PORT)
    return {port for port in ports if port is not None and 1 <= port <= MAX_PORT}


def foreign_directives(directives: tuple[Directive, ...], backend: str, port: int) -> list[str]:
    """What an nginx config does beyond round robin over backend:port at location /, briefly named."""
    addresses = {f"{backend}:{port}", *((backend,) if port == _DEFAULT_HTTP_PORT else ())}
    upstreams = [found for found in _walk(directives) if found.name == "upstream" and found.block is not None]
    servers = [found for found in _walk(directives) if found.name == "server" and found.block is not None]
    foreign = [
        f"upstream {' '.join(upstream.args)}: {_spelled(inner)}"
        for upstream in upstreams
        for inner in upstream.block or ()
        if not (inner.name == "server" and len(inner.args) == 1 and inner.args[0] in addresses)
    ]
    targets = {
        *(f"http://{address}" for address in addresses),
        *(f"http://{upstream.args[0]}" for upstream in upstreams if upstream.args),
    }
    # ScaledApi's config is one server; what a second one does is not carried over at all.
    foreign += ["another server block"] * (len(servers) - 1)
    first_server = (servers[0].block or ()) if servers else ()
    for inner in first_server:
        if inner.name == "location" and inner.args == ("/",):
            foreign += [
                f"location /: {_spelled(found)}" for found in inner.block or () if not _passes(found, targets)
            ]
        elif inner.name not in _SERVER_BASICS:
            foreign.append(_spelled(inner) if inner.name == "location" else inner.name)
    return foreign
