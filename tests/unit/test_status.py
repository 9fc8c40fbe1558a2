"""compute_status: Ready / Progressing / Degraded from observed children, and the transitions."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from scaledapi_operator.spec import parse_spec
from scaledapi_operator.status import Observed, Problem, compute_status, invalid_spec_status, pod_problems

SPEC_DICT: dict[str, Any] = {"replicas": 2, "backend": {"image": "b"}, "proxy": {"image": "n", "replicas": 1}}
SPEC = parse_spec(SPEC_DICT)
HASH = "0123456789abcdef"
T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:01:00Z"


def deployment(
    desired: int, ready: int | None = None, updated: int | None = None, generation: int = 1
) -> dict[str, Any]:
    ready = desired if ready is None else ready
    updated = desired if updated is None else updated
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {
            "observedGeneration": generation,
            "replicas": max(desired, updated),
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": ready,
        },
    }


def pod(name: str, phase: str = "Running", waiting: str | None = None, message: str = "") -> dict[str, Any]:
    state: dict[str, Any] = (
        {"running": {}} if waiting is None else {"waiting": {"reason": waiting, "message": message}}
    )
    return {
        "metadata": {"name": name},
        "status": {"phase": phase, "containerStatuses": [{"name": "c", "state": state}]},
    }


def report(state: str, digest: str = HASH, message: str = "") -> str:
    return json.dumps({"hash": digest, "state": state, "message": message, "time": T0})


def healthy(**changes: Any) -> Observed:
    observed = Observed(
        generation=4,
        spec=SPEC,
        selector="sel",
        url="http://localhost:8080",
        config_hash=HASH,
        endpoints=["10.0.0.1:5252", "10.0.0.2:5252"],
        backend=deployment(2),
        proxy=deployment(1),
        backend_pods=[pod("b-1"), pod("b-2")],
        proxy_pods=[pod("p-1")],
        proxy_reports={"p-1": report("Applied")},
    )
    return replace(observed, **changes)


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_all_good_is_ready() -> None:
    status, transitions = compute_status(healthy(), {}, T0)
    c = conditions(status)
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("True", "AllReplicasReady")
    assert (c["Progressing"]["status"], c["Progressing"]["reason"]) == ("False", "Complete")
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("False", "AsExpected")
    assert all(x["lastTransitionTime"] == T0 and x["observedGeneration"] == 4 for x in c.values())
    assert status["replicas"] == 2
    assert status["readyReplicas"] == 2
    assert status["observedGeneration"] == 4
    assert status["selector"] == "sel"
    assert status["url"] == "http://localhost:8080"
    assert status["endpoints"] == ["10.0.0.1:5252", "10.0.0.2:5252"]
    assert [(t.type, t.reason) for t in transitions] == [("Normal", "Ready")]


def test_unchanged_status_keeps_times_and_posts_nothing() -> None:
    first, _ = compute_status(healthy(), {}, T0)
    second, transitions = compute_status(healthy(), first, T1)
    assert second == first
    assert transitions == []


def test_backend_not_ready() -> None:
    status, _ = compute_status(healthy(backend=deployment(2, ready=1)), {}, T0)
    c = conditions(status)
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "BackendNotReady")
    assert "1/2 backend replicas ready" in c["Ready"]["message"]
    assert (c["Progressing"]["status"], c["Progressing"]["reason"]) == ("True", "RollingOutBackend")
    assert status["readyReplicas"] == 1


def test_stale_observed_generation_is_not_ready() -> None:
    stale = deployment(2)
    stale["metadata"]["generation"] = 2
    status, _ = compute_status(healthy(backend=stale), {}, T0)
    assert conditions(status)["Ready"]["status"] == "False"


def test_missing_deployments_are_creating() -> None:
    status, transitions = compute_status(
        healthy(backend=None, proxy=None, backend_pods=[], proxy_pods=[]), {}, T0
    )
    c = conditions(status)
    assert c["Ready"]["status"] == "False"
    assert c["Progressing"]["reason"] == "Creating"
    assert status["replicas"] == 0
    assert transitions == []  # not ready at birth is not news


def test_endpoints_not_yet_in_upstream() -> None:
    status, _ = compute_status(healthy(endpoints=["10.0.0.1:5252"]), {}, T0)
    c = conditions(status)
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "EndpointsNotReady")
    assert c["Progressing"]["reason"] == "ApplyingProxyConfig"


def test_proxy_config_not_applied_yet() -> None:
    status, _ = compute_status(healthy(proxy_reports={"p-1": report("Applied", digest="old")}), {}, T0)
    c = conditions(status)
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "ProxyConfigNotApplied")
    assert c["Degraded"]["status"] == "False"


def test_no_report_at_all_is_not_ready() -> None:
    status, _ = compute_status(healthy(proxy_reports={}), {}, T0)
    assert conditions(status)["Ready"]["reason"] == "ProxyConfigNotApplied"


def test_terminating_and_pending_proxy_pods_do_not_count() -> None:
    gone = pod("p-old")
    gone["metadata"]["deletionTimestamp"] = T0
    status, _ = compute_status(healthy(proxy_pods=[pod("p-1"), gone, pod("p-new", phase="Pending")]), {}, T0)
    assert conditions(status)["Ready"]["status"] == "True"


def test_rejected_config_is_degraded_with_the_message() -> None:
    reports = {"p-1": report("Rejected", message='nginx: [emerg] unknown directive "bogus"')}
    status, transitions = compute_status(healthy(proxy_reports=reports), {}, T0)
    c = conditions(status)
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("True", "ProxyConfigRejected")
    assert "p-1" in c["Degraded"]["message"]
    assert "unknown directive" in c["Degraded"]["message"]
    assert c["Ready"]["status"] == "False"
    assert ("Warning", "ProxyConfigRejected") in [(t.type, t.reason) for t in transitions]


def test_unreadable_report_is_ignored() -> None:
    status, _ = compute_status(healthy(proxy_reports={"p-1": "not json"}), {}, T0)
    c = conditions(status)
    assert c["Degraded"]["status"] == "False"
    assert c["Ready"]["reason"] == "ProxyConfigNotApplied"


def test_image_pull_backoff_is_degraded() -> None:
    pods = [
        pod("b-1"),
        pod("b-2"),
        pod("b-3", phase="Pending", waiting="ImagePullBackOff", message="Back-off pulling"),
    ]
    status, transitions = compute_status(healthy(backend_pods=pods, backend=deployment(2, updated=1)), {}, T0)
    c = conditions(status)
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("True", "ImagePullBackOff")
    assert c["Degraded"]["message"] == "backend pod b-3 container c: ImagePullBackOff: Back-off pulling"
    assert ("Warning", "ImagePullBackOff") in [(t.type, t.reason) for t in transitions]


def test_err_image_pull_is_degraded() -> None:
    pods = [pod("b-1", phase="Pending", waiting="ErrImagePull")]
    status, _ = compute_status(healthy(backend_pods=pods), {}, T0)
    assert conditions(status)["Degraded"]["reason"] == "ErrImagePull"


def test_crash_loop_is_degraded() -> None:
    pods = [pod("b-1", waiting="CrashLoopBackOff", message="back-off 10s"), pod("b-2")]
    status, _ = compute_status(healthy(backend_pods=pods, backend=deployment(2, ready=1)), {}, T0)
    c = conditions(status)
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("True", "CrashLoopBackOff")
    assert c["Ready"]["status"] == "False"


def test_harmless_waiting_reasons_are_not_degraded() -> None:
    pods = [pod("b-1", waiting="ContainerCreating"), pod("b-2")]
    status, _ = compute_status(healthy(backend_pods=pods), {}, T0)
    assert conditions(status)["Degraded"]["status"] == "False"


def test_several_problems_are_counted() -> None:
    pods = [pod("b-1", waiting="CrashLoopBackOff"), pod("b-2", waiting="CrashLoopBackOff")]
    status, _ = compute_status(healthy(backend_pods=pods), {}, T0)
    assert conditions(status)["Degraded"]["message"].endswith("(and 1 more)")


def test_reconcile_problems_come_first() -> None:
    problem = Problem("NameConflict", "Service hello-proxy is controlled by Other/x")
    status, _ = compute_status(
        healthy(problems=[problem], backend_pods=[pod("b", waiting="ErrImagePull")]), {}, T0
    )
    assert conditions(status)["Degraded"]["reason"] == "NameConflict"


def test_progress_deadline_is_degraded() -> None:
    stuck = deployment(2, ready=1)
    stuck["status"]["conditions"] = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "timed out",
        }
    ]
    status, _ = compute_status(healthy(backend=stuck), {}, T0)
    assert conditions(status)["Degraded"]["reason"] == "ProgressDeadlineExceeded"


def test_transition_times_move_only_on_status_change() -> None:
    ready, _ = compute_status(healthy(), {}, T0)
    broken, transitions = compute_status(healthy(backend=deployment(2, ready=1)), ready, T1)
    c = conditions(broken)
    assert c["Ready"]["lastTransitionTime"] == T1
    assert c["Progressing"]["lastTransitionTime"] == T1
    assert c["Degraded"]["lastTransitionTime"] == T0  # still False
    assert [(t.type, t.reason) for t in transitions] == [("Warning", "NotReady")]


def test_recovery_is_posted() -> None:
    pods = [pod("b-1", waiting="CrashLoopBackOff"), pod("b-2")]
    degraded, _ = compute_status(healthy(backend_pods=pods), {}, T0)
    recovered, transitions = compute_status(healthy(), degraded, T1)
    assert conditions(recovered)["Degraded"]["status"] == "False"
    assert ("Normal", "Recovered") in [(t.type, t.reason) for t in transitions]


def test_degraded_reason_change_is_posted() -> None:
    first, _ = compute_status(healthy(backend_pods=[pod("b-1", waiting="ErrImagePull")]), {}, T0)
    second, transitions = compute_status(
        healthy(backend_pods=[pod("b-1", waiting="ImagePullBackOff")]), first, T1
    )
    assert [(t.type, t.reason) for t in transitions] == [("Warning", "ImagePullBackOff")]
    assert conditions(second)["Degraded"]["lastTransitionTime"] == T0


def test_invalid_spec_status() -> None:
    previous = {"replicas": 2, "selector": "sel"}
    status, transitions = invalid_spec_status(5, "spec.replicas: must be between 0 and 50", previous, T0)
    c = conditions(status)
    assert (c["Degraded"]["status"], c["Degraded"]["reason"]) == ("True", "InvalidSpec")
    assert status["selector"] == "sel"
    assert status["observedGeneration"] == 5
    assert [(t.type, t.reason) for t in transitions] == [("Warning", "InvalidSpec")]


def test_a_users_image_that_cannot_start_gets_a_hint_naming_the_fields() -> None:
    pod = {
        "metadata": {"name": "api-1"},
        "status": {
            "containerStatuses": [
                {
                    "name": "backend",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
            ]
        },
    }
    (problem,) = pod_problems([pod], "backend")
    assert problem.reason == "CrashLoopBackOff"
    assert "(last exit code 1, Error)" in problem.message
    assert "spec.backend.securityContext" in problem.message and "readOnlyRootFilesystem" in problem.message
    root = {
        "reason": "CreateContainerConfigError",
        "message": "container has runAsNonRoot and image will run as root",
    }
    pod["status"]["containerStatuses"][0]["state"]["waiting"] = root  # type: ignore[index]
    (problem,) = pod_problems([pod], "backend")
    assert "runAsUser" in problem.message and "runAsNonRoot: false" in problem.message
    (nginx,) = pod_problems([pod], "nginx")
    assert "spec.backend" not in nginx.message  # the hint is about the user's API only


def test_waking_up_or_going_to_sleep_posts_no_not_ready_warning() -> None:
    zero = parse_spec({**SPEC_DICT, "scaleToZero": {"idleSeconds": 5}})
    sleeping = healthy(
        spec=replace(zero, replicas=0), backend=deployment(0), backend_pods=[], endpoints=[], asleep=True
    )
    asleep, _ = compute_status(sleeping, {}, T0)
    assert conditions(asleep)["Ready"]["status"] == "True"

    woken, transitions = compute_status(
        healthy(spec=zero, backend=deployment(2, ready=0), asleep=False), asleep, T1
    )
    assert conditions(woken)["Ready"]["status"] == "False"  # the condition still says it
    assert [(t.type, t.reason) for t in transitions] == [("Normal", "WakingUp")]

    # Losing Ready while awake is still a warning.
    awake, _ = compute_status(healthy(spec=zero, asleep=False), woken, T1)
    _, lost = compute_status(healthy(spec=zero, backend=deployment(2, ready=1), asleep=False), awake, T1)
    assert [(t.type, t.reason) for t in lost] == [("Warning", "NotReady")]

    # Going to sleep: the Deployment's controller has not seen replicas 0 yet, so Ready is lost a moment.
    scaling_down = deployment(0)
    scaling_down["metadata"]["generation"] = 2
    dozing, fell_asleep = compute_status(replace(sleeping, backend=scaling_down), awake, T1)
    assert conditions(dozing)["Ready"]["status"] == "False"
    assert [(t.type, t.reason) for t in fell_asleep] == [("Normal", "ScaledToZero")]


def crash_looping(last_words: str, port: int | None = None, container: str = "backend") -> dict[str, Any]:
    """A pod whose container crash-loops; its last termination message is the end of its log
    (terminationMessagePolicy FallbackToLogsOnError)."""
    spec = {"containers": [{"name": container, "ports": [{"name": "http", "containerPort": port}]}]}
    return {
        "metadata": {"name": "api-1"},
        "spec": spec if port is not None else {},
        "status": {
            "containerStatuses": [
                {
                    "name": container,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": last_words}},
                }
            ]
        },
    }


GO_ON_80 = "2026/12/06 20:00:00 starting\n2026/12/06 20:00:00 listen tcp :80: bind: permission denied\n"


def test_a_port_the_api_could_not_bind_is_named_with_the_low_port_sysctl() -> None:
    (problem,) = pod_problems([crash_looping(GO_ON_80, port=80)], "backend")
    assert problem.reason == "CrashLoopBackOff"
    assert "The API could not bind port 80: 2026/12/06 20:00:00 listen tcp :80: bind: permission denied" in (
        problem.message
    )
    assert "net.ipv4.ip_unprivileged_port_start=0" in problem.message
    assert "check spec.backend.port matches the port the API listens on" in problem.message
    assert "readOnlyRootFilesystem" not in problem.message  # the bind failure replaces the generic hint
    # Without the port on the pod, the spec's; the canary runs the same pod.
    (canary,) = pod_problems([crash_looping(GO_ON_80)], "canary", 80)
    assert "could not bind port 80" in canary.message


def test_an_api_on_a_low_port_while_the_spec_says_another_is_told_to_set_the_port() -> None:
    (problem,) = pod_problems([crash_looping(GO_ON_80, port=5252)], "backend", 5252)
    assert "The API could not bind its port: " in problem.message
    assert "spec.backend.port is 5252: check it matches the port the API listens on" in problem.message
    assert "below 1024 also gets net.ipv4.ip_unprivileged_port_start=0" in problem.message


@pytest.mark.parametrize(
    "last_words",
    [
        "Traceback (most recent call last):\n  self.socket.bind(self.server_address)\n"
        "PermissionError: [Errno 13] Permission denied",
        "Error: listen EACCES: permission denied 0.0.0.0:80",
        "nginx: [emerg] bind() to 0.0.0.0:80 failed (13: Permission denied)",
        "OSError: [Errno 98] Address already in use",
    ],
)
def test_bind_failures_of_other_runtimes_are_recognised(last_words: str) -> None:
    (problem,) = pod_problems([crash_looping(last_words, port=80)], "backend")
    assert "The API could not bind port 80: " in problem.message
    quoted = problem.message.split("could not bind port 80: ", 1)[1]
    assert "denied" in quoted.lower() or "in use" in quoted.lower()


def test_other_permission_errors_keep_the_security_hint_and_nginx_gets_none() -> None:
    write = "open /var/lib/app/state.db: permission denied"
    (problem,) = pod_problems([crash_looping(write, port=80)], "backend")
    assert "could not bind" not in problem.message
    assert "readOnlyRootFilesystem" in problem.message
    (nginx,) = pod_problems([crash_looping(GO_ON_80, port=80, container="nginx")], "nginx")
    assert "could not bind" not in nginx.message


def test_a_long_log_line_is_cut() -> None:
    (problem,) = pod_problems([crash_looping("bind: permission denied " + "x" * 5000, port=80)], "backend")
    assert len(problem.message) < 800 and "..." in problem.message


def test_degraded_condition_names_the_port_from_the_spec() -> None:
    spec = parse_spec({**SPEC_DICT, "backend": {"image": "b", "port": 80}})
    observed = healthy(spec=spec, backend=deployment(2, ready=0), backend_pods=[crash_looping(GO_ON_80)])
    status, _ = compute_status(observed, {}, T0)
    degraded = conditions(status)["Degraded"]
    assert degraded["reason"] == "CrashLoopBackOff"
    assert "could not bind port 80" in degraded["message"]
