"""The ScaledApi status, computed from what was observed (pure).

Conditions:

* Ready: every desired backend replica is ready at the current spec, nginx routes to exactly those
  endpoints, and every current nginx pod has Applied the desired config hash.
* Progressing: a rollout, a scale or a config apply is under way.
* Degraded: something will not fix itself: an image that cannot be pulled, a crash-looping container
  (with the port it could not bind, when its last words say so),
  an nginx config rejected by `nginx -t`, a stuck Deployment, an object with a child's name that is not
  ours (NameConflict), a child the API server refused (ChildRejected) or failed (ChildApplyFailed), with
  the API server's message and the child's Kind/name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaledapi_operator.builders.backend import PRIVILEGED_PORTS_END, UNPRIVILEGED_PORT_SYSCTL
from scaledapi_operator.spec import ScaledApiSpec
from scaledapi_operator.weights import Split

# The states the nginx pods report (scaledapi_proxy writes them; one definition for both sides).
from scaledapi_proxy.applier import APPLIED, REJECTED

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED)

# Container waiting reasons that will not resolve without a change to the spec or the cluster.
BAD_WAITING_REASONS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """A meaningful change, to be posted as an Event on the ScaledApi."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    generation: int
    spec: ScaledApiSpec
    selector: str
    url: str
    config_hash: str
    endpoints: Sequence[str] = ()
    backend: Mapping[str, Any] | None = None
    proxy: Mapping[str, Any] | None = None
    backend_pods: Sequence[Mapping[str, Any]] = ()
    proxy_pods: Sequence[Mapping[str, Any]] = ()
    proxy_reports: Mapping[str, str] = field(default_factory=dict)
    problems: Sequence[Problem] = ()  # found while reconciling, e.g. a name conflict
    canary: Mapping[str, Any] | None = None  # Deployment NAME-canary, when ours
    canary_pods: Sequence[Mapping[str, Any]] = ()
    split: Split | None = None  # the effective percent of each version, while a canary runs
    canary_endpoints: int = 0  # of `endpoints`, those of canary pods
    asleep: bool | None = None  # scale to zero: whether the backend sleeps (None: not enabled)

    @property
    def stable_endpoints(self) -> int:
        return len(self.endpoints) - self.canary_endpoints


@dataclass(frozen=True)
class Rollout:
    """The progress of one Deployment, as `kubectl rollout status` judges it."""

    exists: bool
    desired: int
    replicas: int
    ready: int
    updated: int
    available: int
    observed: bool

    @property
    def complete(self) -> bool:
        return (
            self.exists
            and self.observed
            and self.updated == self.desired
            and self.replicas == self.desired
            and self.available == self.desired
            and self.ready == self.desired
        )

    def describe(self, what: str) -> str:
        if not self.exists:
            return f"{what} Deployment does not exist yet"
        return f"{self.ready}/{self.desired} {what} replicas ready, {self.updated} up to date"


def rollout(deployment: Mapping[str, Any] | None, desired: int) -> Rollout:
    if deployment is None:
        return Rollout(False, desired, 0, 0, 0, 0, False)
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    return Rollout(
        exists=True,
        desired=desired,
        replicas=status.get("replicas", 0),
        ready=status.get("readyReplicas", 0),
        updated=status.get("updatedReplicas", 0),
        available=status.get("availableReplicas", 0),
        observed=status.get("observedGeneration", 0) >= generation
        and (deployment.get("spec") or {}).get("replicas") == desired,
    )


def _terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pod_problems(pods: Sequence[Mapping[str, Any]], what: str, port: int | None = None) -> list[Problem]:
    """Containers stuck in a waiting state that needs a human (bad image, crash loop, bad config).

    For the API's pods (backend, canary) the message says what to change: the security context an
    image cannot start under, or the port it could not bind (`port`: spec.backend.port, when the pod
    does not say its own).
    """
    found: list[Problem] = []
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
        if _terminating(pod):
            continue
        status = pod.get("status") or {}
        statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in BAD_WAITING_REASONS:
                pod_name = (pod.get("metadata") or {}).get("name", "?")
                detail = waiting.get("message") or ""
                message = f"{what} pod {pod_name} container {container.get('name', '?')}: {reason}"
                message = f"{message}: {detail}" if detail else message
                last = ((container.get("lastState") or {}).get("terminated")) or {}
                if last.get("exitCode") is not None:
                    how = f", {last['reason']}" if last.get("reason") else ""
                    message += f" (last exit code {last['exitCode']}{how})"
                hint = ""
                if what in ("backend", "canary"):
                    bound = _container_port(pod, str(container.get("name", ""))) or port
                    hint = bind_hint(str(last.get("message") or ""), bound) or security_hint(reason, detail)
                found.append(Problem(str(reason), f"{message}. {hint}" if hint else message))
    return found


def _container_port(pod: Mapping[str, Any], container: str) -> int | None:
    """The pod's own `http` containerPort (during a port change, old and new pods differ)."""
    for spec in (pod.get("spec") or {}).get("containers") or []:
        if spec.get("name") != container:
            continue
        for port in spec.get("ports") or []:
            if port.get("name") == "http" and isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


# What an API prints when it cannot listen (Go, Python, Node, nginx, ...): a socket call with a reason.
_SOCKET_CALL = re.compile(r"\b(bind|listen)", re.IGNORECASE)
_DENIED = re.compile(r"permission denied|\beacces\b", re.IGNORECASE)
_IN_USE = re.compile(r"address already in use|\beaddrinuse\b", re.IGNORECASE)
_QUOTED_CHARACTERS = 240


def bind_failure(message: str) -> str:
    """The line of a container's last termination message (with terminationMessagePolicy
    FallbackToLogsOnError, the end of its log) that says it could not bind its port; "" when none does.

    "address already in use" is always a socket's; "permission denied" only with bind or listen in the
    message (a file the API may not write is another matter: security_hint's).
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    in_use = [line for line in lines if _IN_USE.search(line)]
    denied = [line for line in lines if _DENIED.search(line)] if _SOCKET_CALL.search(message) else []
    candidates = in_use + denied
    if not candidates:
        return ""
    best = next((line for line in candidates if _SOCKET_CALL.search(line)), candidates[-1])
    if len(best) > _QUOTED_CHARACTERS:
        best = best[: _QUOTED_CHARACTERS - 3] + "..."
    return best


def bind_hint(message: str, port: int | None) -> str:
    """What to change when the API's last exit says it could not bind its port (see bind_failure)."""
    line = bind_failure(message)
    if not line:
        return ""
    if port is not None and port < PRIVILEGED_PORTS_END:
        return (
            f"The API could not bind port {port}: {line} (ports below {PRIVILEGED_PORTS_END} get"
            f" {UNPRIVILEGED_PORT_SYSCTL}=0; check spec.backend.port matches the port the API listens on)"
        )
    where = f"spec.backend.port is {port}" if port is not None else "spec.backend.port"
    return (
        f"The API could not bind its port: {line} ({where}: check it matches the port the API listens"
        f" on; a spec.backend.port below {PRIVILEGED_PORTS_END} also gets {UNPRIVILEGED_PORT_SYSCTL}=0,"
        " so that the API may bind it without capabilities)"
    )


def security_hint(reason: str, detail: str) -> str:
    """What to change when a user's image cannot start under the backend's default security context."""
    if reason == "CreateContainerConfigError" and ("runAsNonRoot" in detail or "non-root" in detail):
        return (
            "The image runs as root: give spec.backend.securityContext.runAsUser a non-zero uid, or"
            " allow root with runAsUser: 0 and runAsNonRoot: false (not Pod Security restricted)"
        )
    if reason == "CrashLoopBackOff":
        return (
            "An image that writes outside /tmp or needs its own user fails under the defaults (a"
            " read-only root filesystem, uid 10001, no capabilities): see spec.backend.securityContext"
            " (readOnlyRootFilesystem, runAsUser), and that spec.backend.port is the port the API"
            " listens on"
        )
    return ""


def deadline_problems(deployment: Mapping[str, Any] | None, what: str) -> list[Problem]:
    for condition in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return [Problem("ProgressDeadlineExceeded", f"{what}: {condition.get('message', '')}".strip())]
    return []


def parse_reports(data: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The nginx pods' reports (key = pod name, value = JSON); unreadable values are ignored."""
    reports: dict[str, dict[str, Any]] = {}
    for pod, text in data.items():
        try:
            report = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(report, dict):
            reports[pod] = report
    return reports


@dataclass(frozen=True)
class ProxyConfigState:
    current_pods: tuple[str, ...]
    applied: tuple[str, ...]
    rejected: tuple[Problem, ...]

    @property
    def all_applied(self) -> bool:
        return bool(self.current_pods) and len(self.applied) == len(self.current_pods)


def proxy_config_state(observed: Observed) -> ProxyConfigState:
    """Which current (running, not terminating) nginx pods applied the desired config, which rejected one."""
    reports = parse_reports(observed.proxy_reports)
    current = sorted(
        str(pod["metadata"]["name"])
        for pod in observed.proxy_pods
        if not _terminating(pod) and (pod.get("status") or {}).get("phase") == "Running"
    )
    applied: list[str] = []
    rejected: list[Problem] = []
    for pod in current:
        report = reports.get(pod) or {}
        if report.get("state") == APPLIED and report.get("hash") == observed.config_hash:
            applied.append(pod)
        elif report.get("state") == REJECTED:
            # The pod keeps serving its last good config; the newest text it was given failed `nginx -t`.
            message = f"nginx pod {pod} rejected config {report.get('hash', '?')}"
            if report.get("message"):
                message = f"{message}: {report['message']}"
            rejected.append(Problem("ProxyConfigRejected", message))
    return ProxyConfigState(tuple(current), tuple(applied), tuple(rejected))


def _condition(kind: str, true: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": kind, "status": "True" if true else "False", "reason": reason, "message": message}


def canary_rollout(observed: Observed) -> Rollout | None:
    canary = observed.spec.canary
    return None if canary is None else rollout(observed.canary, canary.replicas)


def _endpoints_missing(observed: Observed) -> str:
    """Why the upstream does not hold every desired pod of each version yet ("" when it does)."""
    desired = observed.spec.replicas
    if observed.stable_endpoints != desired:
        return f"{observed.stable_endpoints}/{desired} backend endpoints ready in the nginx upstream"
    canary = observed.spec.canary
    if canary is not None and observed.canary_endpoints != canary.replicas:
        return f"{observed.canary_endpoints}/{canary.replicas} canary endpoints ready in the nginx upstream"
    return ""


def _ready(observed: Observed, backend: Rollout, proxy: Rollout, config: ProxyConfigState) -> dict[str, Any]:
    desired = observed.spec.replicas
    if not backend.complete:
        return _condition(READY, False, "BackendNotReady", backend.describe("backend"))
    canary = canary_rollout(observed)
    if canary is not None and not canary.complete:
        return _condition(READY, False, "CanaryNotReady", canary.describe("canary"))
    missing = _endpoints_missing(observed)
    if missing:
        return _condition(READY, False, "EndpointsNotReady", missing)
    if not proxy.complete:
        return _condition(READY, False, "ProxyNotReady", proxy.describe("nginx"))
    if not config.all_applied:
        applied = f"{len(config.applied)}/{len(config.current_pods)}"
        message = f"{applied} nginx pods applied config {observed.config_hash}"
        return _condition(READY, False, "ProxyConfigNotApplied", message)
    message = f"{desired} backend replicas ready behind {len(config.current_pods)} nginx pods"
    if observed.asleep:
        message = f"scaled to zero: {len(config.current_pods)} nginx pods hold requests and wake the backend"
    if observed.spec.canary is not None and observed.split is not None:
        message += (
            f", {observed.spec.canary.replicas} canary replicas with {observed.split.canary} % of requests"
        )
    return _condition(READY, True, "AllReplicasReady", message)


def _progressing(
    observed: Observed, backend: Rollout, proxy: Rollout, config: ProxyConfigState
) -> dict[str, Any]:
    if not backend.exists or not proxy.exists:
        return _condition(PROGRESSING, True, "Creating", "creating the backend and nginx Deployments")
    if not backend.complete:
        return _condition(PROGRESSING, True, "RollingOutBackend", backend.describe("backend"))
    canary = canary_rollout(observed)
    if canary is not None and not canary.complete:
        return _condition(PROGRESSING, True, "RollingOutCanary", canary.describe("canary"))
    if not proxy.complete:
        return _condition(PROGRESSING, True, "RollingOutProxy", proxy.describe("nginx"))
    if not config.all_applied or _endpoints_missing(observed):
        message = (
            f"nginx config {observed.config_hash} with {len(observed.endpoints)} endpoints being applied"
        )
        return _condition(PROGRESSING, True, "ApplyingProxyConfig", message)
    return _condition(PROGRESSING, False, "Complete", "all children are at the desired state")


def _degraded(observed: Observed, config: ProxyConfigState) -> dict[str, Any]:
    problems = [
        *observed.problems,
        *config.rejected,
        *pod_problems(observed.backend_pods, "backend", observed.spec.backend.port),
        *pod_problems(observed.canary_pods, "canary", observed.spec.backend.port),
        *pod_problems(observed.proxy_pods, "nginx"),
        *deadline_problems(observed.backend, "backend"),
        *deadline_problems(observed.canary, "canary"),
        *deadline_problems(observed.proxy, "nginx"),
    ]
    if not problems:
        return _condition(DEGRADED, False, "AsExpected", "")
    first = problems[0]
    message = first.message if len(problems) == 1 else f"{first.message} (and {len(problems) - 1} more)"
    return _condition(DEGRADED, True, first.reason, message)


def _with_times(
    conditions: list[dict[str, Any]], previous: Sequence[Mapping[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    """lastTransitionTime moves only when a condition's status changes."""
    before = {c.get("type"): c for c in previous}
    result = []
    for condition in conditions:
        old = before.get(condition["type"])
        if old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
        else:
            since = now
        result.append({**condition, "lastTransitionTime": since, "observedGeneration": generation})
    return result


def transitions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> list[Transition]:
    """Events worth posting: Ready gained or lost, Degraded entered (or its reason changed) or left."""
    before = {c.get("type"): c for c in previous}
    found: list[Transition] = []
    for condition in current:
        old = before.get(condition["type"]) or {}
        was, now = old.get("status"), condition["status"]
        if condition["type"] == READY:
            if now == "True" and was != "True":
                found.append(Transition("Normal", "Ready", condition["message"]))
            elif now == "False" and was == "True":
                found.append(
                    Transition("Warning", "NotReady", f"{condition['reason']}: {condition['message']}")
                )
        elif condition["type"] == DEGRADED:
            if now == "True" and (was != "True" or old.get("reason") != condition["reason"]):
                found.append(Transition("Warning", condition["reason"], condition["message"]))
            elif now == "False" and was == "True":
                found.append(
                    Transition("Normal", "Recovered", f"no longer degraded (was {old.get('reason')})")
                )
    return found


def compute_status(
    observed: Observed, previous: Mapping[str, Any], now: str
) -> tuple[dict[str, Any], list[Transition]]:
    """The new `.status` and the transitions since `previous` (the current `.status`)."""
    backend = rollout(observed.backend, observed.spec.replicas)
    proxy = rollout(observed.proxy, observed.spec.proxy.replicas)
    config = proxy_config_state(observed)
    conditions = [
        _ready(observed, backend, proxy, config),
        _progressing(observed, backend, proxy, config),
        _degraded(observed, config),
    ]
    old_conditions = [c for c in previous.get("conditions") or [] if isinstance(c, Mapping)]
    timed = _with_times(conditions, old_conditions, observed.generation, now)
    status: dict[str, Any] = {
        "observedGeneration": observed.generation,
        "replicas": backend.replicas,
        "readyReplicas": backend.ready,
        "selector": observed.selector,
        "endpoints": list(observed.endpoints),
        "url": observed.url,
        "proxyConfigHash": observed.config_hash,
        "conditions": timed,
    }
    status.update(canary_status(observed))
    found = transitions(old_conditions, timed) + split_transitions(previous, status)
    if observed.asleep is not None:
        status["scaledToZero"] = observed.asleep
        slept_or_woke = sleep_transitions(previous, observed.asleep)
        if slept_or_woke:
            # Going to sleep or waking loses Ready for a moment by design: the Normal event says why, and
            # a NotReady warning on every wake-up would teach users to ignore warnings.
            found = [t for t in found if t.reason != "NotReady"]
        found += slept_or_woke
    return status, found


def sleep_transitions(previous: Mapping[str, Any], asleep: bool) -> list[Transition]:
    was = previous.get("scaledToZero")
    if was is None or was == asleep:
        return []
    if asleep:
        return [Transition("Normal", "ScaledToZero", "no request for spec.scaleToZero.idleSeconds: 0 copies")]
    return [Transition("Normal", "WakingUp", "a request came: the backend goes back to spec.replicas copies")]


def canary_status(observed: Observed) -> dict[str, Any]:
    """status.canary (its image and pods) and status.weights (the percent each version gets now),
    while spec.canary is set."""
    canary = observed.spec.canary
    if canary is None or observed.split is None:
        return {}
    pods = rollout(observed.canary, canary.replicas)
    return {
        "canary": {
            "image": canary.image,
            "weight": canary.weight,
            "replicas": pods.replicas,
            "readyReplicas": pods.ready,
        },
        "weights": {"stable": observed.split.stable, "canary": observed.split.canary},
    }


def split_transitions(previous: Mapping[str, Any], status: Mapping[str, Any]) -> list[Transition]:
    """An event when the share of requests each version gets changes, and when the canary goes."""
    before, after = previous.get("weights"), status.get("weights")
    if before == after:
        return []
    if after is None:
        return [Transition("Normal", "CanaryRemoved", "no canary: every request goes to the backend")]
    message = f"requests now {after['stable']} % backend, {after['canary']} % canary"
    asked = (status.get("canary") or {}).get("weight")
    if asked is not None and asked != after["canary"]:
        message += f" (spec.canary.weight {asked}: a version without a ready pod gets no share)"
    return [Transition("Normal", "TrafficSplitChanged", message)]


def invalid_spec_status(
    generation: int, message: str, previous: Mapping[str, Any], now: str
) -> tuple[dict[str, Any], list[Transition]]:
    """A spec the operator refuses (the CRD should have): Degraded InvalidSpec, nothing else changes."""
    old_conditions = [c for c in previous.get("conditions") or [] if isinstance(c, Mapping)]
    conditions = [
        _condition(READY, False, "InvalidSpec", message),
        _condition(PROGRESSING, False, "InvalidSpec", message),
        _condition(DEGRADED, True, "InvalidSpec", message),
    ]
    timed = _with_times(conditions, old_conditions, generation, now)
    status = {**previous, "observedGeneration": generation, "conditions": timed}
    return status, transitions(old_conditions, timed)
