"""`scaledapi from-compose`: the ScaledApi for the scaled service of a docker compose file.

`docker compose up --scale back-end=2` runs copies of an API behind an nginx service; the ScaledApi runs
them in Kubernetes. The scaled service becomes spec.backend (compose_mapping.py maps its fields,
compose_health.py its healthcheck), the nginx service in front of it gives spec.proxy.port (the host port
users call) and its mounted nginx.conf is read for the API's port when the service names none, and for
what the generated proxy config will not do. Everything that does not carry over is one "not mapped" line
on stderr, with what to do instead; the manifest goes to stdout.

Users convert files that others wrote and apply the output unedited: the files are read within bounds
(compose_files.py), and every failure is exit 2 with one line naming the file and the field, never a
traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scaledapi_operator import API_VERSION, KIND
from scaledapi_operator.compose_files import MountedConfig, load_compose, mounted_nginx_configs
from scaledapi_operator.compose_mapping import (
    MAPPED_KEYS,
    MAX_PORT,
    MAX_REPLICAS,
    ProxiedPort,
    backend_spec,
    foreign_directives,
    interpolations,
    port_entry,
    proxied_ports,
    replicas,
    single_port,
)
from scaledapi_operator.compose_values import ComposeError, ComposeWarning, as_list, as_mapping, shown
from scaledapi_operator.spec import SERVICE_TYPES, parse_spec
from scaledapi_operator.spec_errors import SpecError

PROG = "scaledapi from-compose"
SUMMARY = "the ScaledApi for the scaled service of a docker compose file"
DESCRIPTION = (
    "Print the ScaledApi for SERVICE of COMPOSE_FILE as YAML on stdout, and on stderr one line for each "
    "thing that does not carry over. Exit 2 when the file cannot be converted."
)
DEFAULT_PROXY_IMAGE = "scaledapi/nginx:dev"
# The CRD's rule: the children NAME-backend, NAME-proxy and NAME-proxy-status must be DNS-1035 labels.
NAME_RULE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 50
NAMESPACE_RULE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAMESPACE_LENGTH = 63
NODE_PORTS = (30000, 32767)
# Directives named in one "not carried over" line, at most.
MAX_LISTED = 6
# Characters that would break a message's one line (controls, line and paragraph separators): escaped.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Options:
    """What the command line adds to, or puts in place of, the compose file."""

    name: str | None = None
    namespace: str | None = None
    image: str | None = None
    replicas: int | None = None
    proxy_image: str = DEFAULT_PROXY_IMAGE
    service_type: str | None = None
    node_port: int | None = None
    port: int | None = None  # the API's port, when the compose file does not say it (or says it wrong)


@dataclass(frozen=True)
class Conversion:
    manifest: dict[str, Any]
    warnings: list[ComposeWarning]


def nginx_config_warnings(configs: Sequence[MountedConfig], backend: str, port: int) -> list[ComposeWarning]:
    warnings = []
    for config in configs:
        if config.directives is None:
            foreign = [f"the whole file, which could not be read ({config.problem})"]
        else:
            foreign = foreign_directives(config.directives, backend, port)
        if foreign:
            listed = ", ".join(foreign[:MAX_LISTED]) + (" and more" if len(foreign) > MAX_LISTED else "")
            text = f"{config.source}: ScaledApi generates the proxy's config; not carried over: {listed}"
            warnings.append(ComposeWarning(config.field, text))
    return warnings


def proxied_port(configs: Sequence[MountedConfig], backend: str) -> ProxiedPort | None:
    """The port the proxy's nginx configs send `backend` requests to; ComposeError when they name two."""
    found = [
        (config, port)
        for config in configs
        for port in sorted(proxied_ports(config.directives or (), backend))
    ]
    ports = sorted({port for _, port in found})
    if len(ports) > 1:
        config = found[0][0]
        named = ", ".join(map(str, ports))
        problem = f"{config.source}: proxy_pass sends {backend} requests to ports {named}: give the API's "
        raise ComposeError(config.field, problem + "port with --port")
    return ProxiedPort(found[0][0].field, found[0][0].source, found[0][1]) if found else None


def _fronts(name: str, service: Any, backend: str) -> bool:
    """Whether the service is the proxy of `backend`: it depends on it, or it runs an nginx image."""
    if name == backend or not isinstance(service, Mapping):
        return False
    depends_on, image = service.get("depends_on"), service.get("image")
    return (isinstance(depends_on, list | Mapping) and backend in depends_on) or (
        isinstance(image, str) and image.rpartition("/")[2].startswith("nginx")
    )


def find_proxy(services: Mapping[str, Any], backend: str, warnings: list[ComposeWarning]) -> str | None:
    """The nginx service in front of `backend`: the first by name of those that front it."""
    candidates = sorted(
        (name for name, service in services.items() if _fronts(name, service, backend)), key=str
    )
    if not candidates:
        text = f"no nginx service in front of {backend}: spec.proxy.port is left at its default 8080"
        warnings.append(ComposeWarning("services", text, not_mapped=False))
        return None
    if len(candidates) > 1:
        others = ", ".join(map(str, candidates[1:]))
        text = f"taken as the proxy of {backend} (first by name); also in front of it: {others}"
        warnings.append(ComposeWarning(f"services.{candidates[0]}", text, not_mapped=False))
    # The key itself, as the file gives it: a service named 1 is the integer 1 in YAML, not "1".
    return candidates[0]


def published_port(service: Mapping[str, Any], field: str, warnings: list[ComposeWarning]) -> int | None:
    """The host port the proxy service publishes (what users call), None when it publishes no one."""
    ports = as_list(service.get("ports"), f"{field}.ports")
    published = port_entry(ports[0], f"{field}.ports[0]").published if ports else None
    if published is None or not re.fullmatch(r"[0-9]+", published):
        text = "publishes no single host port: spec.proxy.port is left at its default 8080"
        warnings.append(ComposeWarning(f"{field}.ports", text, not_mapped=False))
        return None
    return single_port(published, f"{field}.ports[0]")


def proxy_spec(port: int | None, options: Options) -> dict[str, Any]:
    service_type = options.service_type or ("NodePort" if options.node_port is not None else None)
    if options.node_port is not None and service_type == "ClusterIP":
        raise ComposeError("--node-port", "needs --service-type NodePort or LoadBalancer")
    spec = {
        "image": options.proxy_image,
        "port": port,
        "serviceType": service_type,
        "nodePort": options.node_port,
    }
    return {key: value for key, value in spec.items() if value is not None}


def metadata(options: Options, service: str) -> dict[str, str]:
    name = options.name if options.name is not None else service
    rule = f"must match {NAME_RULE.pattern} and have at most {MAX_NAME_LENGTH} characters"
    if not NAME_RULE.match(name) or len(name) > MAX_NAME_LENGTH:
        if options.name is None:
            raise ComposeError(f"services.{service}", f"not a ScaledApi name ({rule}): give one with --name")
        raise ComposeError("--name", f"{name!r} {rule}")
    if options.namespace is None:
        return {"name": name}
    if not NAMESPACE_RULE.match(options.namespace) or len(options.namespace) > MAX_NAMESPACE_LENGTH:
        raise ComposeError("--namespace", f"{options.namespace!r} is not a namespace name (a DNS label)")
    return {"name": name, "namespace": options.namespace}


def convert(compose: Any, service_name: str, options: Options, compose_dir: Path) -> Conversion:
    """The ScaledApi for `service_name` of a loaded compose file, and what did not carry over.

    `compose_dir` is where the file's relative paths start (the nginx config the proxy mounts).
    """
    services = as_mapping(compose, "(top level)").get("services")
    if not isinstance(services, Mapping) or not services:
        raise ComposeError("services", "required: a mapping of the file's services")
    if service_name not in services:
        raise ComposeError(
            f"services.{service_name}", f"no such service (the file has: {', '.join(map(str, services))})"
        )
    field = f"services.{service_name}"
    service = as_mapping(services[service_name], field)
    meta = metadata(options, service_name)
    if options.port is not None and not 1 <= options.port <= MAX_PORT:
        raise ComposeError("--port", f"must be a whole number from 1 to {MAX_PORT}, got {options.port}")
    warnings = [
        found
        for key, value in service.items()
        if key in MAPPED_KEYS and not (key == "image" and options.image)
        for found in interpolations(value, f"{field}.{key}")
    ]
    spec_replicas = replicas(service, field, options.replicas)
    proxy_warnings: list[ComposeWarning] = []
    proxy = find_proxy(services, service_name, proxy_warnings)
    proxy_field = f"services.{proxy}"
    proxy_service = as_mapping(services[proxy], proxy_field) if proxy is not None else {}
    configs = mounted_nginx_configs(proxy_service, proxy_field, compose_dir)
    # The nginx config is where the port comes from only when the service itself names none.
    names_port = options.port is not None or service.get("expose") or service.get("ports")
    proxied = None if names_port else proxied_port(configs, service_name)
    backend = backend_spec(service, field, options.image, warnings, options.port, proxied)
    warnings += proxy_warnings + nginx_config_warnings(configs, service_name, backend["port"])
    port = published_port(proxy_service, proxy_field, warnings) if proxy is not None else None
    spec = {"replicas": spec_replicas, "backend": backend, "proxy": proxy_spec(port, options)}
    warnings += [
        ComposeWarning(f"services.{name}", f"only {service_name} and its proxy become the ScaledApi")
        for name in services
        if name not in (service_name, proxy)
    ]
    try:
        parse_spec(spec)  # the operator's own parser: never print a manifest it would refuse
    except SpecError as error:
        raise ComposeError(None, f"the converted ScaledApi would be refused: {error}") from None
    return Conversion({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}, warnings)


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def whole_number(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
            problem = f"must be a whole number from {low} to {high}, got {shown(text)}"
            raise argparse.ArgumentTypeError(problem)
        return int(text)

    return whole_number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("compose_file", metavar="COMPOSE_FILE", type=Path, help="the docker compose file")
    parser.add_argument("service", metavar="SERVICE", help="the scaled service: the API behind nginx")
    parser.add_argument("--name", help="the ScaledApi's name (default: SERVICE)")
    parser.add_argument("--namespace", help="the ScaledApi's namespace (default: none, kubectl's current)")
    parser.add_argument("--image", help="the API's image (default: the service's image)")
    copies = "number of copies (default: deploy.replicas, else scale, else 1)"
    parser.add_argument("--replicas", metavar="N", type=_bounded(0, MAX_REPLICAS), help=copies)
    proxy_image = "ScaledApi's nginx image (default: %(default)s)"
    parser.add_argument("--proxy-image", metavar="IMAGE", default=DEFAULT_PROXY_IMAGE, help=proxy_image)
    service_type = "the proxy Service's type (default: ClusterIP, or NodePort with --node-port)"
    parser.add_argument("--service-type", choices=SERVICE_TYPES, help=service_type)
    node_port = "the proxy Service's node port"
    parser.add_argument("--node-port", metavar="PORT", type=_bounded(*NODE_PORTS), help=node_port)
    port = "the API's port (default: expose[0], ports[0], the proxy's nginx.conf proxy_pass, or PORT)"
    parser.add_argument("--port", metavar="N", type=_bounded(1, MAX_PORT), help=port)


def one_line(text: str) -> str:
    """`text` with whatever would start a new line (a control character, a line separator) escaped."""
    return _LINE_BREAKING.sub(lambda match: ascii(match[0])[1:-1], text)


def _say(text: str) -> None:
    print(f"{PROG}: {one_line(text)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Print the manifest on stdout and the warnings on stderr: 0; or one error line on stderr: 2."""
    path: Path = args.compose_file
    options = Options(
        name=args.name,
        namespace=args.namespace,
        image=args.image,
        replicas=args.replicas,
        proxy_image=args.proxy_image,
        service_type=args.service_type,
        node_port=args.node_port,
        port=args.port,
    )
    try:
        conversion = convert(load_compose(path), args.service, options, path.parent)
        manifest = yaml.safe_dump(conversion.manifest, sort_keys=False)
    except ComposeError as error:
        _say(f"error: {path}: {error}")
        return 2
    except Exception as error:  # the promise to users: one line, exit 2, never a traceback
        _say(f"error: {path}: cannot be converted ({type(error).__name__}: {shown(str(error))})")
        return 2
    for warning in conversion.warnings:
        _say(str(warning))
    sys.stdout.write(manifest)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """python -m scaledapi_operator.from_compose COMPOSE_FILE SERVICE [options]"""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def cli(argv: Sequence[str] | None = None) -> int:
    """The `scaledapi` console script: scaledapi from-compose COMPOSE_FILE SERVICE [options]."""
    parser = argparse.ArgumentParser(prog="scaledapi", description="Tools for ScaledApi users.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from_compose = commands.add_parser("from-compose", help=SUMMARY, description=DESCRIPTION)
    add_arguments(from_compose)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
