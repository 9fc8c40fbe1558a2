"""`scaledapi from-compose`: the ScaledApi for the scaled service of a docker compose file.

`docker compose up --scale back-end=2` runs copies of an API behind an nginx service; the ScaledApi runs
them in Kubernetes. The scaled service becomes spec.backend (compose_mapping.py maps its fields), the
nginx service in front of it gives spec.proxy.port (the host port users call) and its mounted nginx.conf
is read for what the generated proxy config will not do. Everything that does not carry over is one
"not mapped" line on stderr, with what to do instead; the manifest goes to stdout.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scaledapi_operator import API_VERSION, KIND
from scaledapi_operator.compose_mapping import (
    MAPPED_KEYS,
    MAX_REPLICAS,
    ComposeError,
    ComposeWarning,
    as_list,
    as_mapping,
    backend_spec,
    foreign_directives,
    interpolations,
    parse_nginx,
    port_entry,
    replicas,
    single_port,
)
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


@dataclass(frozen=True)
class Conversion:
    manifest: dict[str, Any]
    warnings: list[ComposeWarning]


def _mounted_nginx_configs(
    service: Mapping[str, Any], field: str, compose_dir: Path
) -> Iterator[tuple[str, str, Path]]:
    """(field, source as written, file) of each nginx config file the service mounts from the host."""
    for index, volume in enumerate(as_list(service.get("volumes"), f"{field}.volumes")):
        if isinstance(volume, Mapping):
            source, target = volume.get("source"), volume.get("target")
        else:
            source, _, rest = str(volume).partition(":")
            target = rest.partition(":")[0]
        if not isinstance(source, str) or not isinstance(target, str):
            continue
        target_dir, _, target_name = target.rpartition("/")
        if target.endswith("nginx.conf") or (target_dir.endswith("conf.d") and target_name.endswith(".conf")):
            file = compose_dir / Path(source).expanduser()
            if file.is_file():
                yield f"{field}.volumes[{index}]", source, file


def nginx_config_warnings(
    service: Mapping[str, Any], field: str, compose_dir: Path, backend: str, port: int
) -> list[ComposeWarning]:
    warnings = []
    for where, source, file in _mounted_nginx_configs(service, field, compose_dir):
        try:
            foreign = foreign_directives(parse_nginx(file.read_text(encoding="utf-8")), backend, port)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            foreign = [f"the whole file, which could not be read ({error})"]
        if foreign:
            listed = ", ".join(foreign[:MAX_LISTED]) + (" and more" if len(foreign) > MAX_LISTED else "")
            text = f"{source}: ScaledApi generates the proxy's config; not carried over: {listed}"
            warnings.append(ComposeWarning(where, text))
    return warnings


def _fronts(name: str, service: Any, backend: str) -> bool:
    """Whether the service is the proxy of `backend`: it depends on it, or it runs an nginx image."""
    if name == backend or not isinstance(service, Mapping):
        return False
    depends_on, image = service.get("depends_on"), service.get("image")
    return (isinstance(depends_on, list | Mapping) and backend in depends_on) or (
        isinstance(image, str) and image.rpartition("/")[2].startswith("nginx")
    )


def find_proxy(
    services: Mapping[str, Any], backend: str, port: int, compose_dir: Path, warnings: list[ComposeWarning]
) -> tuple[str | None, int | None]:
    """The nginx service in front of `backend` and the host port it publishes (what users call)."""
    candidates = sorted(name for name, service in services.items() if _fronts(name, service, backend))
    if not candidates:
        text = f"no nginx service in front of {backend}: spec.proxy.port is left at its default 8080"
        warnings.append(ComposeWarning("services", text, not_mapped=False))
        return None, None
    proxy, field = candidates[0], f"services.{candidates[0]}"
    if len(candidates) > 1:
        others = ", ".join(candidates[1:])
        text = f"taken as the proxy of {backend} (first by name); also in front of it: {others}"
        warnings.append(ComposeWarning(field, text, not_mapped=False))
    service = as_mapping(services[proxy], field)
    ports = as_list(service.get("ports"), f"{field}.ports")
    published = port_entry(ports[0], f"{field}.ports[0]").published if ports else None
    warnings += nginx_config_warnings(service, field, compose_dir, backend, port)
    if published is None or not published.isdigit():
        text = "publishes no single host port: spec.proxy.port is left at its default 8080"
        warnings.append(ComposeWarning(f"{field}.ports", text, not_mapped=False))
        return proxy, None
    return proxy, single_port(published, f"{field}.ports[0]")


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
    warnings = [
        found
        for key, value in service.items()
        if key in MAPPED_KEYS and not (key == "image" and options.image)
        for found in interpolations(value, f"{field}.{key}")
    ]
    spec_replicas = replicas(service, field, options.replicas)
    backend = backend_spec(service, field, options.image, warnings)
    proxy, port = find_proxy(services, service_name, backend["port"], compose_dir, warnings)
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


def load_compose(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ComposeError(None, f"cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ComposeError(None, f"not UTF-8 text: {error.reason}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ComposeError(None, f"not YAML: {error.problem}{where}") from None
    except yaml.YAMLError as error:
        raise ComposeError(None, f"not YAML: {' '.join(str(error).split())}") from None


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def whole_number(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {text!r}")
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
    )
    try:
        conversion = convert(load_compose(path), args.service, options, path.parent)
    except ComposeError as error:
        print(f"{PROG}: error: {path}: {error}", file=sys.stderr)
        return 2
    for warning in conversion.warnings:
        print(f"{PROG}: {warning}", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump(conversion.manifest, sort_keys=False))
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
