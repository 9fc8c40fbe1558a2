"""kubectl, polling and cluster state helpers for the e2e suite.

The suite drives the cluster the way a user does: through the ``kubectl`` binary (``make up`` puts one in
``/var/cache/scaledapi/bin``), always with ``--context kind-scaledapi`` so that it never touches another
cluster. Waiting is :func:`wait_for`: polling with a deadline that, on timeout, fails with the last
observed state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORTS_DIR = REPO_ROOT / "reports"
CACHE_BIN = Path(os.environ.get("SCALEDAPI_CACHE", "/var/cache/scaledapi")) / "bin"
CONTEXT = os.environ.get("SCALEDAPI_KUBE_CONTEXT", "kind-" + os.environ.get("CLUSTER_NAME", "scaledapi"))

GROUP = "scaledapi.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScaledApi"
PLURAL = "scaledapis"
CRD_NAME = f"{PLURAL}.{GROUP}"

OPERATOR_NAMESPACE = "scaledapi-system"
DEFAULT_OPERATOR_DEPLOYMENT = "scaledapi-operator"
OPERATOR_LEASE = "scaledapi-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
CONFIG_KEY = "nginx.conf"
CONFIG_HASH_ANNOTATION = "scaledapi.dev/config-hash"
E2E_LABEL = "scaledapi.dev/e2e"

MAKE_UP_HINT = "run `make up` first (or `make e2e`, which brings the cluster up itself)"

T = TypeVar("T")
JSON = dict[str, Any]


class KubectlError(AssertionError):
    """A kubectl command failed; the message carries the command and its stderr."""

    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"kubectl {' '.join(args)} exited {result.returncode}\n"
            f"stderr: {result.stderr.strip()}\nstdout: {result.stdout.strip()[:2000]}"
        )
        self.result = result


def kubectl_binary() -> str:
    """The kubectl to use: $KUBECTL, then the one `make up` installs, then the one on PATH."""
    explicit = os.environ.get("KUBECTL")
    if explicit:
        return explicit
    cached = CACHE_BIN / "kubectl"
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which("kubectl")
    if found is None:
        raise AssertionError(f"kubectl not found (looked in $KUBECTL, {CACHE_BIN}, PATH): {MAKE_UP_HINT}")
    return found


def kubectl(
    *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl --context CONTEXT ARGS``; raise KubectlError on a non-zero exit when ``check``."""
    argv = [kubectl_binary(), "--context", CONTEXT, *args]
    try:
        result = subprocess.run(  # noqa: PLW1510 - checked below with a better message
            argv, input=input, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"kubectl {' '.join(args)} did not finish within {timeout} s") from exc
    if check and result.returncode != 0:
        raise KubectlError(list(args), result)
    return result


def kubectl_json(*args: str, timeout: float = 60.0) -> JSON:
    """Run a kubectl command with ``-o json`` and parse its output."""
    result = kubectl(*args, "-o", "json", timeout=timeout)
    parsed = json.loads(result.stdout)
    if not isinstance(parsed, dict):
        raise AssertionError(f"kubectl {' '.join(args)} -o json did not return an object")
    return parsed


def get_json(kind: str, name: str, ns: str | None = None) -> JSON | None:
    """The object as JSON, or None when it does not exist."""
    args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
    if ns is not None:
        args += ["-n", ns]
    result = kubectl(*args, timeout=60.0)
    if not result.stdout.strip():
        return None
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def list_json(kind: str, ns: str | None, selector: str | None = None) -> list[JSON]:
    """Items of ``kubectl get KIND`` (comma-separated kinds allowed) in a namespace."""
    args = ["get", kind]
    args += ["-n", ns] if ns is not None else ["--all-namespaces"]
    if selector:
        args += ["-l", selector]
    items = kubectl_json(*args).get("items", [])
    assert isinstance(items, list)
    return items


def apply(obj: Mapping[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    """``kubectl apply -f -`` of one object, piped as JSON."""
    return kubectl("apply", "-f", "-", *extra, input=json.dumps(obj))


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.5,
    describe: Callable[[], str] | None = None,
    what: str = "",
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or the deadline passes.

    Exceptions from the predicate count as "not yet" and are remembered. On timeout, raise AssertionError
    with ``what`` was waited for (default: the predicate's name), the last value or exception, and
    ``describe()`` (the current state of whatever the caller finds useful).
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this loop
    deadline = time.monotonic() + timeout
    last: object = None
    stop = threading.Event()
    while True:
        try:
            value = predicate()
        except (AssertionError, subprocess.SubprocessError, ValueError, OSError, KeyError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value
            last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        stop.wait(min(interval, remaining))
    what = what or getattr(predicate, "__name__", "condition").replace("_", " ")
    state = ""
    if describe is not None:
        try:
            state = "\nstate: " + describe()
        except (AssertionError, subprocess.SubprocessError, ValueError, OSError) as exc:
            state = f"\n(describing the state failed: {exc})"
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}{state}")


# --- ScaledApi children ----------------------------------------------------------------------------------


def node_port_holders(ports: Iterable[int]) -> list[str]:
    """The Services (namespace/name (port)) that hold any of these node ports, in any namespace."""
    wanted = set(ports)
    return [
        f"{s['metadata']['namespace']}/{s['metadata']['name']} ({p['nodePort']})"
        for s in list_json("services", None)
        for p in s["spec"].get("ports", [])
        if p.get("nodePort") in wanted
    ]


def selector(name: str, component: str | None = None) -> str:
    """Label selector of a ScaledApi's children (all of them, or one component)."""
    parts = {LABEL_NAME: "scaledapi", LABEL_INSTANCE: name}
    if component is not None:
        parts[LABEL_COMPONENT] = component
    return ",".join(f"{k}={v}" for k, v in sorted(parts.items()))


def backend_selector(name: str) -> str:
    """The contract's ``status.selector``: keys sorted, component, instance, name."""
    return selector(name, "backend")


@dataclass(frozen=True)
class PodState:
    name: str
    uid: str
    ip: str
    ready: bool
    terminating: bool
    phase: str
    images: tuple[str, ...]
    restarts: int
    waiting_reasons: tuple[str, ...] = field(default=())
    node: str = ""


def pod_state(pod: Mapping[str, Any]) -> PodState:
    status = pod.get("status", {})
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    statuses = status.get("containerStatuses") or []
    waiting = tuple(
        str(s.get("state", {}).get("waiting", {}).get("reason", ""))
        for s in statuses
        if s.get("state", {}).get("waiting")
    )
    return PodState(
        name=pod["metadata"]["name"],
        uid=pod["metadata"]["uid"],
        ip=status.get("podIP", ""),
        ready=ready,
        terminating=pod["metadata"].get("deletionTimestamp") is not None,
        phase=status.get("phase", ""),
        images=tuple(c.get("image", "") for c in pod.get("spec", {}).get("containers", [])),
        restarts=sum(int(s.get("restartCount", 0)) for s in statuses),
        waiting_reasons=waiting,
        node=str(pod.get("spec", {}).get("nodeName") or ""),
    )


def pods(ns: str, name: str, component: str = "backend") -> list[PodState]:
    return sorted(
        (pod_state(p) for p in list_json("pods", ns, selector(name, component))), key=lambda p: p.name
    )


def active_pods(ns: str, name: str, component: str = "backend") -> list[PodState]:
    """Pods that are not being deleted."""
    return [p for p in pods(ns, name, component) if not p.terminating]


def describe_pods(ns: str, name: str) -> str:
    lines = []
    for component in ("backend", "proxy"):
        for p in pods(ns, name, component):
            flags = ("ready" if p.ready else "not-ready") + (" terminating" if p.terminating else "")
            lines.append(
                f"{component} {p.name} {p.ip or '-'} {p.phase} {flags} images={','.join(p.images)} "
                f"restarts={p.restarts} waiting={','.join(p.waiting_reasons) or '-'}"
            )
    return "; ".join(lines) or "no pods"


def condition(obj: Mapping[str, Any] | None, kind: str) -> JSON | None:
    """The status condition of this type, if any."""
    if obj is None:
        return None
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            assert isinstance(c, dict)
            return c
    return None


def resource_versions(ns: str, name: str, kinds: str) -> dict[str, str]:
    """``Kind/name -> resourceVersion`` of the labelled children of these kinds."""
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in list_json(kinds, ns, f"{LABEL_INSTANCE}={name}")
    }


# --- operator ---------------------------------------------------------------------------------------------


def _operator_manifest() -> dict[str, Any] | None:
    path = REPO_ROOT / "manifests" / "operator.yaml"
    if path.is_file():
        import yaml  # noqa: PLC0415 - only needed here

        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Deployment":
                meta = doc.get("metadata", {})
                if meta.get("namespace", OPERATOR_NAMESPACE) == OPERATOR_NAMESPACE:
                    return doc
    return None


def operator_deployment_name() -> str:
    """The operator Deployment's name from manifests/operator.yaml, else the contract's default."""
    doc = _operator_manifest()
    return str(doc["metadata"]["name"]) if doc else DEFAULT_OPERATOR_DEPLOYMENT


def operator_manifest_replicas() -> int:
    """How many operator replicas manifests/operator.yaml runs (one leads, the others stand by)."""
    doc = _operator_manifest()
    return int(doc["spec"].get("replicas", 1)) if doc else 1


def operator_leader() -> str | None:
    """The operator pod that holds the leader Lease, if any."""
    lease = get_json("lease", OPERATOR_LEASE, OPERATOR_NAMESPACE)
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return str(holder) if holder else None


def operator_selector() -> str:
    dep = kubectl_json("get", "deployment", operator_deployment_name(), "-n", OPERATOR_NAMESPACE)
    labels = dep["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def operator_pods() -> list[PodState]:
    return sorted(
        (pod_state(p) for p in list_json("pods", OPERATOR_NAMESPACE, operator_selector())),
        key=lambda p: p.name,
    )


def wait_operator_ready(timeout: float = 180.0) -> list[PodState]:
    """Wait until the operator runs the Deployment's replicas, all Ready, none terminating, and one of
    them holds the leader Lease; return them."""
    dep = kubectl_json("get", "deployment", operator_deployment_name(), "-n", OPERATOR_NAMESPACE)
    wanted = int(dep["spec"].get("replicas", 1))

    def ready() -> list[PodState] | None:
        current = operator_pods()
        names = {p.name for p in current}
        settled = len(current) == wanted and all(p.ready and not p.terminating for p in current)
        return current if settled and operator_leader() in names else None

    return wait_for(
        ready,
        timeout,
        1.0,
        what=f"{wanted} operator pods to be Ready, one of them leading",
        describe=lambda: f"leader: {operator_leader()}; operator pods: "
        + "; ".join(f"{p.name} ready={p.ready} terminating={p.terminating}" for p in operator_pods()),
    )


# --- diagnostics ------------------------------------------------------------------------------------------


def _section(title: str, *args: str) -> str:
    try:
        result = kubectl(*args, check=False, timeout=30.0)
        body = (result.stdout + result.stderr).rstrip()
    except AssertionError as exc:
        body = str(exc)
    return f"===== {title}: kubectl {' '.join(args)}\n{body}\n"


def diagnostics(namespaces: Iterable[str], names: Iterable[str]) -> str:
    """What a person would look at when a scenario fails."""
    names = sorted(set(names))
    parts: list[str] = []
    for ns in namespaces:
        parts.append(
            _section(
                f"children in {ns}",
                "get",
                "scaledapi,deploy,rs,pod,svc,cm,pdb,endpointslices,hpa",
                "-o",
                "wide",
                "-n",
                ns,
            )
        )
        parts.append(_section(f"ScaledApis in {ns}", "get", "scaledapi", "-o", "yaml", "-n", ns))
        parts.append(_section(f"describe ScaledApis in {ns}", "describe", "scaledapi", "-n", ns))
        parts.append(_section(f"describe pods in {ns}", "describe", "pods", "-n", ns))
        parts.append(_section(f"events in {ns}", "get", "events", "-n", ns, "--sort-by=.lastTimestamp"))
        for name in names:
            parts.append(
                _section(f"nginx logs {ns}/{name}", "logs", "-n", ns, f"deploy/{name}-proxy", "--tail=100")
            )
            parts.append(_section(f"config of {ns}/{name}", "get", "cm", "-n", ns, "-o", "yaml"))
    try:
        operator = operator_deployment_name()
    except (AssertionError, OSError, ValueError) as exc:  # a broken manifest must not hide the failure
        operator = DEFAULT_OPERATOR_DEPLOYMENT
        parts.append(f"(reading manifests/operator.yaml failed: {exc})\n")
    parts.append(_section("operator pods", "get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide"))
    parts.append(
        _section("operator logs", "logs", "-n", OPERATOR_NAMESPACE, f"deploy/{operator}", "--tail=200")
    )
    return "\n".join(parts)
