"""ScaledApi manifests (built from the sample as dicts) and the waits that scenarios share."""

from __future__ import annotations

import copy
import json
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tests.e2e import kube, ports, traffic
from tests.e2e.kube import JSON

SAMPLE_PATH = kube.REPO_ROOT / "manifests" / "scaledapi.yaml"
CRD_PATH = kube.REPO_ROOT / "manifests" / "crd.yaml"
BACKEND_IMAGE_ALT = "scaledapi/backend:dev2"  # the lead's script tags the backend image with it, too
# Host port of kind-config*.yaml for each node port the suite uses.
HOST_PORTS = ports.HOST_PORTS


def load_sample() -> JSON:
    """The ScaledApi of manifests/scaledapi.yaml."""
    if not SAMPLE_PATH.is_file():
        raise AssertionError(f"{SAMPLE_PATH} is missing: the suite builds its ScaledApis from the sample")
    for doc in yaml.safe_load_all(SAMPLE_PATH.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == kube.KIND:
            return doc
    raise AssertionError(f"{SAMPLE_PATH} has no {kube.KIND}")


def sample_name() -> str:
    return str(load_sample()["metadata"]["name"])


def manifest(
    ns: str,
    name: str | None = None,
    replicas: int | None = None,
    node_port: int | None = ports.MAIN,
    backend: Mapping[str, Any] | None = None,
    proxy: Mapping[str, Any] | None = None,
) -> JSON:
    """The sample, placed in ``ns``, with these changes.

    ``node_port=None`` makes the proxy Service ClusterIP (no host port); otherwise NodePort on that node
    port with ``externalURL`` the matching host port of kind-config.yaml.
    """
    obj = copy.deepcopy(load_sample())
    meta = obj.setdefault("metadata", {})
    meta["namespace"] = ns
    if name is not None:
        meta["name"] = name
    spec = obj.setdefault("spec", {})
    if replicas is not None:
        spec["replicas"] = replicas
    proxy_spec = spec.setdefault("proxy", {})
    if node_port is None:
        proxy_spec["serviceType"] = "ClusterIP"
        proxy_spec.pop("nodePort", None)
        proxy_spec.pop("externalURL", None)
    else:
        proxy_spec["serviceType"] = "NodePort"
        proxy_spec["nodePort"] = node_port
        proxy_spec["externalURL"] = f"http://localhost:{HOST_PORTS[node_port]}"
    spec.setdefault("backend", {}).update(backend or {})
    proxy_spec.update(proxy or {})
    return obj


def get(ns: str, name: str) -> JSON | None:
    return kube.get_json(kube.PLURAL, name, ns)


def describe(ns: str, name: str) -> str:
    """A one-line picture of a ScaledApi: its status and its pods."""
    obj = get(ns, name)
    status = json.dumps(obj.get("status", {}), sort_keys=True) if obj else "absent"
    return f"{ns}/{name} status={status}; pods: {kube.describe_pods(ns, name)}"


def scale(ns: str, name: str, replicas: int) -> None:
    """``kubectl scale scaledapi/NAME --replicas=N`` (through the scale subresource)."""
    kube.kubectl("scale", f"scaledapi/{name}", f"--replicas={replicas}", "-n", ns)


def wait_serving(
    ns: str,
    name: str,
    replicas: int,
    port: int = traffic.DEFAULT_PORT,
    timeout: float = 180.0,
    image: str | None = None,
    no_terminating: bool = False,
    api: traffic.Api = traffic.BUNDLED,
) -> list[kube.PodState]:
    """Wait until ``replicas`` backend pods (of ``image``, if given) are Ready and HTTP through ``port``
    is answered by exactly those pods; return them. ``no_terminating``: also wait for old pods to be gone.

    It can return inside a reload: for about 100 ms nginx's old and new workers both accept, so answers
    come from both configs. Before counting answers or checking their order, wait_config_applied.
    """

    def serving() -> list[kube.PodState] | None:
        all_pods = kube.pods(ns, name)
        active = [p for p in all_pods if not p.terminating]
        if len(active) != replicas or not all(p.ready for p in active):
            return None
        if image is not None and any(p.images != (image,) for p in active):
            return None
        if no_terminating and len(all_pods) != len(active):
            return None
        if replicas and not traffic.serves_exactly(port, [p.name for p in active], api=api):
            return None
        return active

    return kube.wait_for(
        serving,
        timeout,
        0.5,
        what=f"{ns}/{name} to serve from {replicas} ready pod(s) on port {port}",
        describe=lambda: describe(ns, name),
    )


def config_applied(ns: str, name: str) -> str | None:
    """The config hash when every running nginx pod reports the current ConfigMap text as Applied."""
    cm = kube.get_json("configmap", f"{name}-proxy", ns)
    status_cm = kube.get_json("configmap", f"{name}-proxy-status", ns)
    if cm is None or status_cm is None:
        return None
    wanted = cm["metadata"].get("annotations", {}).get(kube.CONFIG_HASH_ANNOTATION)
    reports = status_cm.get("data") or {}
    proxies = kube.active_pods(ns, name, "proxy")
    if not wanted or not proxies:
        return None
    for pod in proxies:
        raw = reports.get(pod.name)
        if raw is None:
            return None
        report = json.loads(raw)
        if report.get("hash") != wanted or report.get("state") != "Applied":
            return None
    return str(wanted)


def wait_config_applied(ns: str, name: str, timeout: float = 60.0) -> str:
    def describe_reports() -> str:
        cm = kube.get_json("configmap", f"{name}-proxy", ns)
        status_cm = kube.get_json("configmap", f"{name}-proxy-status", ns)
        annotations = cm["metadata"].get("annotations", {}) if cm else "absent"
        return f"{name}-proxy annotations={annotations}; {name}-proxy-status data=" + (
            json.dumps(status_cm.get("data"), sort_keys=True) if status_cm else "absent"
        )

    return kube.wait_for(
        lambda: config_applied(ns, name),
        timeout,
        0.5,
        what=f"every nginx pod of {ns}/{name} to report the current config as Applied",
        describe=describe_reports,
    )


def wait_ready(ns: str, name: str, timeout: float = 180.0, interval: float = 1.0) -> None:
    """Wait until the ScaledApi's Ready condition is True."""
    kube.wait_for(
        lambda: (kube.condition(get(ns, name), "Ready") or {}).get("status") == "True",
        timeout,
        interval,
        what=f"{ns}/{name} to be Ready",
        describe=lambda: describe(ns, name),
    )


def wait_observed(ns: str, name: str, timeout: float = 60.0) -> JSON:
    """Wait until status.observedGeneration equals metadata.generation."""

    def observed() -> JSON | None:
        obj = get(ns, name)
        if obj and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]:
            return obj
        return None

    return kube.wait_for(
        observed,
        timeout,
        0.5,
        what=f"{ns}/{name} status.observedGeneration to catch up",
        describe=lambda: describe(ns, name),
    )


def delete_and_wait(ns: str, name: str, timeout: float = 120.0) -> None:
    kube.kubectl("delete", "scaledapi", name, "-n", ns, "--wait=false", "--ignore-not-found")
    kube.wait_for(
        lambda: get(ns, name) is None,
        timeout,
        0.5,
        what=f"ScaledApi {ns}/{name} to be gone",
        describe=lambda: describe(ns, name),
    )


@dataclass
class PodEvent:
    at: float  # time.monotonic() when kubectl printed it
    name: str
    ready: bool
    terminating: bool
    ip: str


class PodWatcher:
    """``kubectl get pods -w`` in the background: when each pod was first seen Ready, to ~ms precision."""

    # "|" between fields: in watch mode kubectl passes the output through a tab writer, tabs become spaces.
    _FORMAT = (
        '{.metadata.name}{"|"}{.status.conditions[?(@.type=="Ready")].status}{"|"}'
        '{.metadata.deletionTimestamp}{"|"}{.status.podIP}{"\\n"}'
    )

    def __init__(self, ns: str, label_selector: str) -> None:
        self.events: list[PodEvent] = []
        self.ready_at: dict[str, float] = {}
        self.listed = threading.Event()  # a first line came: the watch runs (an empty list prints none)
        self._lock = threading.Lock()
        argv = [
            kube.kubectl_binary(),
            "--context",
            kube.CONTEXT,
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            label_selector,
            "--watch",
            "-o",
            f"jsonpath={self._FORMAT}",
        ]
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self._thread = threading.Thread(target=self._read, name="pod-watch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            at = time.monotonic()
            fields = line.strip().split("|")
            if len(fields) < 4 or not fields[0]:
                continue
            event = PodEvent(at, fields[0], fields[1] == "True", bool(fields[2]), fields[3])
            with self._lock:
                self.events.append(event)
                if event.ready and not event.terminating:
                    self.ready_at.setdefault(event.name, at)
            self.listed.set()

    def first_ready(self) -> dict[str, float]:
        """Pod -> when it was first seen Ready; raises if the watch has died."""
        if self._process.poll() is not None:
            self._stderr.seek(0)
            raise AssertionError(f"kubectl get pods --watch exited: {self._stderr.read().strip()}")
        with self._lock:
            return dict(self.ready_at)

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._thread.join(timeout=10)
        self._stderr.close()

    def __enter__(self) -> PodWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def events(ns: str, name: str) -> Counter[tuple[str, str]]:
    """Events posted on the ScaledApi so far, by (type, reason); an aggregated event counts as its count."""
    found: Counter[tuple[str, str]] = Counter()
    for event in kube.list_json("events", ns):
        involved = event.get("involvedObject") or {}
        if involved.get("kind") == kube.KIND and involved.get("name") == name:
            found[(str(event.get("type")), str(event.get("reason")))] += int(event.get("count") or 1)
    return found
