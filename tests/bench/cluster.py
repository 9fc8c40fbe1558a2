"""What the sections share on the cluster: bench namespaces, small ScaledApis and their plain twins,
watches with client-side timestamps, and the operator (its replicas, its memory and CPU).

Everything here builds on tests/e2e (kube, scaledapi, nodes); the plain-Kubernetes twins are rendered by
the operator's own pure builders, so that both sides run exactly the same pods.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaledapi_operator import builders
from scaledapi_operator.nginx_conf import render_nginx_conf
from scaledapi_operator.spec import parse_spec
from tests.e2e import kube, nodes
from tests.e2e import scaledapi as sapi
from tests.e2e.kube import JSON

BENCH_LABEL = "scaledapi.dev/bench"
# Small enough that 10 backends, or 7 ScaledApis with their nginx, fit a 2-core node beside the rest;
# no CPU limit, so that the throughput section can saturate.
SMALL_RESOURCES: JSON = {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "256Mi"}}
# The plain twins must not look like the operator's children: its child handlers filter on this label.
PLAIN_MANAGED_BY = "scaledapi-bench"
PLAIN_UID = "00000000-0000-0000-0000-00000000bench"


# --- namespaces ------------------------------------------------------------------------------------------


class Namespaces:
    """Bench namespaces (``bench-PREFIX-xxxxxx``, labelled): created on demand, deleted and waited for."""

    def __init__(self) -> None:
        self.live: list[str] = []

    def create(self, prefix: str, quota_pods: int | None = None) -> str:
        base = re.sub(r"[^a-z0-9-]+", "-", f"bench-{prefix}".lower()).strip("-")[:50]
        name = f"{base}-{secrets.token_hex(3)}"
        labels = {
            BENCH_LABEL: "true",
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
        kube.kubectl(
            "create",
            "-f",
            "-",
            input=json.dumps(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
            ),
        )
        self.live.append(name)
        # Pods are refused until the namespace's default ServiceAccount exists.
        kube.wait_for(
            lambda: kube.get_json("serviceaccount", "default", name), 60.0, 0.2, what=f"{name}/default SA"
        )
        if quota_pods is not None:
            quota = {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "bench-pods", "namespace": name},
                "spec": {"hard": {"pods": str(quota_pods)}},
            }
            kube.apply(quota)
            # Enforced once the quota controller has written its status.
            kube.wait_for(
                lambda: ((kube.get_json("resourcequota", "bench-pods", name) or {}).get("status") or {})
                .get("hard", {})
                .get("pods")
                == str(quota_pods),
                60.0,
                0.5,
                what=f"ResourceQuota {name}/bench-pods to be enforced",
            )
        return name

    def delete(self, *names: str, timeout: float = 600.0) -> None:
        """Delete these namespaces and wait until they are gone (their pods stopped: the node is quiet)."""
        if not names:
            return
        # The namespace controller, finding pods still stopping, looks again only after their grace
        # period (40 s for nginx): stop the workloads first and wait for their pods, then the namespace
        # goes at once.
        existing = set(bench_namespaces())
        with_pods = [ns for ns in names if ns in existing and kube.list_json("pods", ns)]
        for ns in with_pods:
            kube.kubectl(
                "delete", f"{kube.PLURAL},deployments", "--all", "-n", ns, "--wait=false", timeout=600
            )
        if with_pods:
            kube.wait_for(
                lambda: not any(kube.list_json("pods", ns) for ns in with_pods),
                timeout,
                1.0,
                what=f"the pods of {', '.join(with_pods)} to be gone",
            )
        kube.kubectl("delete", "namespace", *names, "--wait=false", "--ignore-not-found")
        wait_gone(names, timeout)
        self.live = [n for n in self.live if n not in names]

    def cleanup(self, timeout: float = 600.0) -> None:
        self.delete(*self.live, timeout=timeout)


def bench_namespaces() -> list[str]:
    return [n["metadata"]["name"] for n in kube.list_json("namespaces", None, f"{BENCH_LABEL}=true")]


def wait_gone(names: Iterable[str], timeout: float) -> None:
    wanted = set(names)
    kube.wait_for(
        lambda: not wanted.intersection(bench_namespaces()),
        timeout,
        1.0,
        what=f"namespaces {', '.join(sorted(wanted))} to be gone",
        describe=lambda: "still there: " + ", ".join(sorted(wanted.intersection(bench_namespaces()))),
    )


# --- ScaledApis and their plain twins ----------------------------------------------------------------------


def scaledapi(ns: str, name: str, replicas: int, node_port: int | None = None) -> JSON:
    """The sample as ``ns/name`` with small backend resources; a ClusterIP proxy unless ``node_port``."""
    return sapi.manifest(ns, name, replicas, node_port=node_port, backend={"resources": SMALL_RESOURCES})


def _relabel(value: Any) -> Any:
    """A copy in which every ``managed-by: scaledapi-operator`` label says PLAIN_MANAGED_BY instead."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == kube.LABEL_MANAGED_BY and item == builders.common.MANAGED_BY:
                out[key] = PLAIN_MANAGED_BY
            else:
                out[key] = _relabel(item)
        return out
    if isinstance(value, list):
        return [_relabel(item) for item in value]
    return value


def plain(obj: Mapping[str, Any]) -> JSON:
    """A built child as a plain manifest: no owner reference, not labelled as the operator's."""
    out: JSON = _relabel(copy.deepcopy(dict(obj)))
    out["metadata"].pop("ownerReferences", None)
    return out


def _owner(obj: Mapping[str, Any]) -> builders.Owner:
    meta = obj["metadata"]
    return builders.Owner(name=meta["name"], namespace=meta["namespace"], uid=PLAIN_UID)


def plain_backend(obj: Mapping[str, Any]) -> JSON:
    """The backend Deployment the operator would create for this ScaledApi, as a bare Deployment."""
    return plain(builders.backend_deployment(_owner(obj), parse_spec(obj["spec"])))


def plain_children(obj: Mapping[str, Any]) -> list[JSON]:
    """Every child the operator creates for this ScaledApi (as reconcile.reconcile does), plain. The
    nginx config is the one with no ready endpoint: nothing would write the upstream of a plain one."""
    owner, spec = _owner(obj), parse_spec(obj["spec"])
    text = render_nginx_conf(builders.nginx_settings(spec), [])
    built = [
        builders.backend_service(owner, spec),
        builders.proxy_service_account(owner),
        builders.proxy_role(owner),
        builders.proxy_status_configmap(owner),
        builders.proxy_configmap(owner, text, "plain"),
        builders.proxy_role_binding(owner),
        builders.backend_deployment(owner, spec),
        builders.proxy_deployment(owner, spec),
        builders.proxy_service(owner, spec),
        builders.backend_network_policy(owner),
        builders.proxy_network_policy(owner),
        builders.backend_pdb(owner, spec),
        builders.proxy_pdb(owner, spec),
    ]
    return [plain(child) for child in built if child is not None]


def apply_all(objects: Sequence[Mapping[str, Any]], verb: str = "apply", timeout: float = 600.0) -> None:
    """One ``kubectl apply -f FILE`` (or ``create``) of all these objects, as a List."""
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="bench-") as handle:
        json.dump(document, handle)
        handle.flush()
        kube.kubectl(verb, "-f", handle.name, timeout=timeout)


# --- watches with client-side timestamps -----------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when kubectl printed the line
    name: str
    fields: tuple[str, ...]


class Watch:
    """``kubectl get KIND -n NS --watch -o jsonpath=...`` in the background; every line with the time it
    arrived. ``fields`` are jsonpath expressions after ``.metadata.name``. Restarted when kubectl exits
    (the server ends watches now and then): the list it starts with brings back the current state."""

    def __init__(self, ns: str, kind: str, fields: Sequence[str], label_selector: str | None = None) -> None:
        parts = ["{.metadata.name}", *(f'{{"|"}}{{{f}}}' for f in fields), '{"\\n"}']
        self._argv = [
            kube.kubectl_binary(),
            "--context",
            kube.CONTEXT,
            "get",
            kind,
            "-n",
            ns,
            "--watch",
            "-o",
            "jsonpath=" + "".join(parts),
        ]
        if label_selector:
            self._argv += ["-l", label_selector]
        self.what = f"{kind} in {ns}"
        self.seen: list[Seen] = []
        self.restarts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{kind}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            process = subprocess.Popen(
                self._argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            self._process = process
            assert process.stdout is not None
            for line in process.stdout:
                at = time.monotonic()
                parts = line.rstrip("\n").split("|")
                if parts and parts[0]:
                    with self._lock:
                        self.seen.append(Seen(at, parts[0], tuple(parts[1:])))
            process.wait()
            if not self._stop.is_set():
                self.restarts += 1
                self._stop.wait(0.5)  # back-off before the next watch, not a wait for a condition

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def latest(self) -> dict[str, tuple[str, ...]]:
        """Each object's last seen fields."""
        return {s.name: s.fields for s in self.snapshot()}

    def first(self, predicate: Callable[[tuple[str, ...]], bool], since: float = 0.0) -> dict[str, float]:
        """Object -> the first time (at or after ``since``) a line of it satisfied ``predicate``."""
        found: dict[str, float] = {}
        for s in self.snapshot():
            if s.at >= since and s.name not in found and predicate(s.fields):
                found[s.name] = s.at
        return found

    def stop(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self._thread.join(timeout=10)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ScaledApi watch fields: generation, observedGeneration, Ready condition status.
SCALEDAPI_FIELDS = (
    ".metadata.generation",
    ".status.observedGeneration",
    '.status.conditions[?(@.type=="Ready")].status',
)


def scaledapi_ready(fields: tuple[str, ...]) -> bool:
    generation, observed, ready = (*fields, "", "", "")[:3]
    return ready == "True" and observed == generation


def scaledapi_observed(fields: tuple[str, ...]) -> bool:
    generation, observed = (*fields, "", "")[:2]
    return bool(generation) and observed == generation


# Deployment watch fields: generation, observedGeneration, spec.replicas, availableReplicas, updatedReplicas.
DEPLOYMENT_FIELDS = (
    ".metadata.generation",
    ".status.observedGeneration",
    ".spec.replicas",
    ".status.availableReplicas",
    ".status.updatedReplicas",
)


def deployment_available(fields: tuple[str, ...]) -> bool:
    generation, observed, replicas, available, updated = (*fields, *("",) * 5)[:5]
    return (
        bool(generation)
        and observed == generation
        and available == replicas
        and updated == replicas
        and replicas not in ("", "0")
    )


# --- the operator ------------------------------------------------------------------------------------------


def operator_deployment() -> str:
    return kube.operator_deployment_name()


def scale_operator(replicas: int) -> None:
    kube.kubectl(
        "scale",
        f"deployment/{operator_deployment()}",
        "-n",
        kube.OPERATOR_NAMESPACE,
        f"--replicas={replicas}",
    )


def restore_operator(timeout: float = 300.0) -> None:
    """The manifest's replicas, all Ready and one leading (a section that stopped it puts it back)."""
    dep = kube.get_json("deployment", operator_deployment(), kube.OPERATOR_NAMESPACE)
    wanted = kube.operator_manifest_replicas()
    if dep is not None and dep["spec"].get("replicas") != wanted:
        scale_operator(wanted)
    kube.wait_operator_ready(timeout)


@dataclass(frozen=True)
class ContainerStat:
    pod: str
    container: str
    working_set_bytes: int
    cpu_core_ns: int  # cumulative CPU time
    timestamp_ns: int


def parse_crictl_stats(text: str, namespace: str, container: str | None = None) -> list[ContainerStat]:
    """``crictl stats -o json`` -> the stats of the containers of pods in ``namespace`` (pure)."""
    out = []
    for item in json.loads(text).get("stats") or []:
        labels = (item.get("attributes") or {}).get("labels") or {}
        if labels.get("io.kubernetes.pod.namespace") != namespace:
            continue
        name = labels.get("io.kubernetes.container.name", "")
        if container is not None and name != container:
            continue
        memory, cpu = item.get("memory") or {}, item.get("cpu") or {}
        out.append(
            ContainerStat(
                pod=labels.get("io.kubernetes.pod.name", ""),
                container=name,
                working_set_bytes=int((memory.get("workingSetBytes") or {}).get("value", 0)),
                cpu_core_ns=int((cpu.get("usageCoreNanoSeconds") or {}).get("value", 0)),
                timestamp_ns=int(cpu.get("timestamp") or memory.get("timestamp") or 0),
            )
        )
    return out


def operator_stats(node_names: Sequence[str]) -> list[ContainerStat]:
    """The operator containers' stats, from crictl in every node."""
    stats: list[ContainerStat] = []
    for node in node_names:
        result = nodes.on_node(
            node,
            "crictl",
            "stats",
            "-o",
            "json",
            "--label",
            f"io.kubernetes.pod.namespace={kube.OPERATOR_NAMESPACE}",
        )
        if result.returncode != 0:
            raise AssertionError(f"crictl stats in {node} exited {result.returncode}: {result.stderr[-500:]}")
        stats += parse_crictl_stats(result.stdout, kube.OPERATOR_NAMESPACE, "operator")
    return stats


class OperatorSampler:
    """Samples the operator pods' working set and CPU every ``interval`` seconds in the background, each
    sample tagged with the current phase and whether the pod held the Lease. ``sample()`` takes one now.

    A sample: ``{"t": seconds since start, "phase", "pod", "leader", "working_set_mb", "cpu_m"}``, where
    ``cpu_m`` is the pod's CPU in millicores since its previous sample (None for its first).
    """

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.phase = "start"
        self.node_names = nodes.all_nodes()
        self._previous: dict[str, ContainerStat] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="operator-sampler", daemon=True)

    def start(self) -> OperatorSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sample()
            except (AssertionError, OSError, ValueError, subprocess.SubprocessError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:500])
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))  # the sampling period

    def sample(self) -> list[dict[str, Any]]:
        leader = kube.operator_leader()
        stats = operator_stats(self.node_names)
        now = round(time.monotonic() - self._started, 2)
        taken = []
        with self._lock:
            for stat in stats:
                before = self._previous.get(stat.pod)
                cpu_m = None
                if before is not None and stat.timestamp_ns > before.timestamp_ns:
                    cpu_m = round(
                        (stat.cpu_core_ns - before.cpu_core_ns)
                        / (stat.timestamp_ns - before.timestamp_ns)
                        * 1000,
                        1,
                    )
                self._previous[stat.pod] = stat
                entry = {
                    "t": now,
                    "phase": self.phase,
                    "pod": stat.pod,
                    "leader": stat.pod == leader,
                    "working_set_mb": round(stat.working_set_bytes / 1e6, 1),
                    "cpu_m": cpu_m,
                }
                self.samples.append(entry)
                taken.append(entry)
        return taken

    def set_phase(self, phase: str) -> None:
        self.phase = phase

    def elapsed(self) -> float:
        """Seconds since the sampler was made: the time axis of its samples."""
        return time.monotonic() - self._started

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def __enter__(self) -> OperatorSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self, phase: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.samples if phase is None or s["phase"] == phase]


def max_working_set(samples: Iterable[Mapping[str, Any]]) -> float | None:
    values = [float(s["working_set_mb"]) for s in samples]
    return max(values) if values else None


def hey_node() -> str:
    """Where load is generated: the first worker, or the control plane of a one-node cluster."""
    all_nodes = nodes.all_nodes()
    workers = [n for n in all_nodes if not n.endswith("control-plane")]
    return (workers or all_nodes)[0]


def git_commit(repo: Path = kube.REPO_ROOT) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def wait_scaledapis_ready(ns: str, names: Iterable[str], timeout: float = 300.0) -> None:
    """Until every named ScaledApi has Ready=True for its current generation."""
    wanted = set(names)

    def not_ready() -> list[str]:
        items = {o["metadata"]["name"]: o for o in kube.list_json(kube.PLURAL, ns)}
        missing = []
        for name in sorted(wanted):
            obj = items.get(name)
            ready = kube.condition(obj, "Ready")
            if (
                obj is None
                or ready is None
                or ready.get("status") != "True"
                or obj.get("status", {}).get("observedGeneration") != obj["metadata"]["generation"]
            ):
                missing.append(name)
        return missing

    kube.wait_for(
        lambda: not not_ready(),
        timeout,
        1.0,
        what=f"ScaledApis {', '.join(sorted(wanted))} in {ns} to be Ready",
        describe=lambda: "not Ready: " + ", ".join(not_ready()),
    )


def cluster_ip_url(ns: str, service: str, path: str = "/api/hello") -> str:
    """http://CLUSTER-IP:PORT/path of a Service (reachable from inside every node through kube-proxy)."""
    svc = kube.kubectl_json("get", "service", service, "-n", ns)
    ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["port"]
    return f"http://{ip}:{port}{path}"
