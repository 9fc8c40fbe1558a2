"""The pure builders: names, labels, owner references, Pod Security "restricted", probes, RBAC."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from scaledapi_operator import builders
from scaledapi_operator.builders.common import CONFIG_HASH_ANNOTATION, Owner, selector_string
from scaledapi_operator.compare import hand_added, is_subset, undo_patch
from scaledapi_operator.nginx_conf import NginxSettings
from scaledapi_operator.spec import ScaledApiSpec, parse_spec
from scaledapi_operator.spec_errors import SpecError
from tests.unit.test_reconcile import merge

OWNER = Owner(name="hello", namespace="demo", uid="1234-uid", generation=3)
LABELS_BACKEND = {
    "app.kubernetes.io/name": "scaledapi",
    "app.kubernetes.io/instance": "hello",
    "app.kubernetes.io/component": "backend",
    "app.kubernetes.io/managed-by": "scaledapi-operator",
}
SELECTOR_BACKEND = {k: v for k, v in LABELS_BACKEND.items() if k != "app.kubernetes.io/managed-by"}


def make_spec(**overrides: Any) -> ScaledApiSpec:
    body: dict[str, Any] = {
        "replicas": 2,
        "backend": {
            "image": "scaledapi/backend:dev",
            "terminationDelaySeconds": 5,
            "gracefulShutdownSeconds": 20,
        },
        "proxy": {
            "image": "scaledapi/nginx:dev",
            "serviceType": "NodePort",
            "nodePort": 30080,
            "externalURL": "http://localhost:8080",
        },
    }
    body.update(overrides)
    return parse_spec(body)


def all_children(spec: ScaledApiSpec) -> list[dict[str, Any]]:
    children = [
        builders.backend_deployment(OWNER, spec),
        builders.backend_service(OWNER, spec),
        builders.proxy_configmap(OWNER, "events {}\n", "0123456789abcdef"),
        builders.proxy_status_configmap(OWNER),
        builders.proxy_deployment(OWNER, spec),
        builders.proxy_service(OWNER, spec),
        builders.proxy_service_account(OWNER),
        builders.proxy_role(OWNER),
        builders.proxy_role_binding(OWNER),
        builders.backend_network_policy(OWNER),
        builders.proxy_network_policy(OWNER),
    ]
    pdb = builders.backend_pdb(OWNER, spec)
    assert pdb is not None
    return [*children, pdb]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


def test_fixed_names_and_kinds() -> None:
    names = {(c["kind"], c["metadata"]["name"]) for c in all_children(make_spec())}
    assert names == {
        ("Deployment", "hello-backend"),
        ("Service", "hello-backend"),
        ("PodDisruptionBudget", "hello-backend"),
        ("ConfigMap", "hello-proxy"),
        ("ConfigMap", "hello-proxy-status"),
        ("Deployment", "hello-proxy"),
        ("Service", "hello-proxy"),
        ("ServiceAccount", "hello-proxy"),
        ("Role", "hello-proxy"),
        ("RoleBinding", "hello-proxy"),
        ("NetworkPolicy", "hello-backend"),
        ("NetworkPolicy", "hello-proxy"),
    }


def test_every_child_has_labels_namespace_and_a_controller_owner_reference() -> None:
    for child in all_children(make_spec()):
        meta = child["metadata"]
        assert meta["namespace"] == "demo"
        component = "proxy" if "-proxy" in meta["name"] else "backend"
        assert meta["labels"] == {**LABELS_BACKEND, "app.kubernetes.io/component": component}
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "scaledapi.dev/v1alpha1",
                "kind": "ScaledApi",
                "name": "hello",
                "uid": "1234-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_builders_are_deterministic() -> None:
    assert all_children(make_spec()) == all_children(make_spec())


def test_selector_string_matches_the_contract() -> None:
    assert selector_string(OWNER) == (
        "app.kubernetes.io/component=backend,app.kubernetes.io/instance=hello,app.kubernetes.io/name=scaledapi"
    )


def test_backend_deployment_shape() -> None:
    spec = make_spec(replicas=4)
    deployment = builders.backend_deployment(OWNER, spec)
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["selector"] == {"matchLabels": SELECTOR_BACKEND}
    assert deployment["spec"]["template"]["metadata"]["labels"] == LABELS_BACKEND
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    c = container(deployment)
    assert c["image"] == "scaledapi/backend:dev"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in c and "args" not in c
    assert c["ports"] == [{"name": "http", "containerPort": 5252, "protocol": "TCP"}]


def test_backend_env() -> None:
    spec = make_spec(backend={"image": "b", "port": 6000, "greeting": "Hi", "gracefulShutdownSeconds": 17})
    assert env(builders.backend_deployment(OWNER, spec)) == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "PORT": "6000",
        "GRACEFUL_TIMEOUT": "17",
        "GREETING": "Hi",
    }


def test_users_env_comes_after_ours_and_replaces_a_name_we_set() -> None:
    user_env = [
        {"name": "PORT", "value": "9000"},
        {"name": "URL", "value": "http://0.0.0.0:$(PORT)"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
    ]
    spec = make_spec(backend={"image": "b", "env": user_env, "envFrom": [{"configMapRef": {"name": "cfg"}}]})
    c = container(builders.backend_deployment(OWNER, spec))
    assert [item["name"] for item in c["env"]] == ["POD_NAME", "GRACEFUL_TIMEOUT", "PORT", "URL", "TOKEN"]
    assert c["env"][2:] == user_env
    assert c["envFrom"] == [{"configMapRef": {"name": "cfg"}}]


def test_command_args_and_working_dir_only_when_given() -> None:
    spec = make_spec(
        backend={"image": "b", "command": ["python3"], "args": ["server.py", "-v"], "workingDir": "/app"}
    )
    c = container(builders.backend_deployment(OWNER, spec))
    assert (c["command"], c["args"], c["workingDir"]) == (["python3"], ["server.py", "-v"], "/app")
    plain = container(builders.backend_deployment(OWNER, make_spec()))
    assert not {"command", "args", "workingDir", "envFrom"} & set(plain)


def test_tcp_readiness_and_liveness_follows_it_unless_off() -> None:
    spec = make_spec(backend={"image": "b", "readiness": {"type": "TCP", "initialDelaySeconds": 3}})
    c = container(builders.backend_deployment(OWNER, spec))
    assert c["readinessProbe"]["tcpSocket"] == {"port": "http"}
    assert c["readinessProbe"]["initialDelaySeconds"] == 3
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert "httpGet" not in c["livenessProbe"]
    off = make_spec(backend={"image": "b", "readiness": {"type": "TCP"}, "liveness": {"type": "None"}})
    assert "livenessProbe" not in container(builders.backend_deployment(OWNER, off))


def test_exec_readiness_runs_the_command_and_liveness_is_a_tcp_connect() -> None:
    readiness = {"type": "Exec", "command": ["/bin/sh", "-c", "pg_isready -q"], "failureThreshold": 4}
    c = container(
        builders.backend_deployment(OWNER, make_spec(backend={"image": "b", "readiness": readiness}))
    )
    assert c["readinessProbe"] == {
        "exec": {"command": ["/bin/sh", "-c", "pg_isready -q"]},
        "initialDelaySeconds": 0,
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "successThreshold": 1,
        "failureThreshold": 4,
    }
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert "exec" not in c["livenessProbe"]


def test_resources_default_and_given() -> None:
    default = container(builders.backend_deployment(OWNER, make_spec()))
    assert default["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    given = make_spec(backend={"image": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
    assert container(builders.backend_deployment(OWNER, given))["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"}
    }


def test_security_context_from_the_spec() -> None:
    spec = make_spec(
        backend={
            "image": "b",
            "securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False}
            | {"readOnlyRootFilesystem": False},
        }
    )
    deployment = builders.backend_deployment(OWNER, spec)
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"], pod["runAsNonRoot"]) == (0, 0, False)
    c = container(deployment)["securityContext"]
    assert (c["runAsUser"], c["runAsNonRoot"], c["readOnlyRootFilesystem"]) == (0, False, False)
    assert c["capabilities"] == {"drop": ["ALL"]} and c["allowPrivilegeEscalation"] is False


def test_no_pre_stop_hook_without_a_delay() -> None:
    spec = make_spec(backend={"image": "b", "terminationDelaySeconds": 0})
    assert "lifecycle" not in container(builders.backend_deployment(OWNER, spec))


def test_backend_probes_and_graceful_termination() -> None:
    spec = make_spec(
        backend={"image": "b", "port": 6000, "terminationDelaySeconds": 7, "gracefulShutdownSeconds": 11}
    )
    deployment = builders.backend_deployment(OWNER, spec)
    c = container(deployment)
    for probe in ("readinessProbe", "livenessProbe"):
        # The named port: a probe follows a change of spec.backend.port.
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    # The kubelet's own sleep: no binary needed in the image.
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 7}}}
    # delay + graceful + margin, so that SIGKILL never cuts a draining gunicorn short.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 7 + 11 + 5


RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.mark.parametrize(
    ("build", "user"), [(builders.backend_deployment, 10001), (builders.proxy_deployment, 101)]
)
def test_pods_pass_pod_security_restricted(build: Any, user: int) -> None:
    deployment = build(OWNER, make_spec())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(deployment)
    assert {k: c["securityContext"][k] for k in RESTRICTED} == RESTRICTED
    assert c["securityContext"]["runAsUser"] == user
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - the pod's emptyDir
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert "hostNetwork" not in pod and "hostPID" not in pod


SYSCTL = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}


@pytest.mark.parametrize(
    ("port", "sysctl"), [(80, True), (1, True), (1023, True), (1024, False), (5252, False)]
)
def test_a_port_below_1024_gets_the_unprivileged_port_sysctl(port: int, sysctl: bool) -> None:
    """An API on :80 runs as uid 10001 without capabilities: the pod's network namespace lets it bind."""
    spec = make_spec(backend={"image": "b", "port": port}, canary={"image": "c", "replicas": 1, "weight": 10})
    for built in (builders.backend_deployment(OWNER, spec), builders.canary_deployment(OWNER, spec)):
        assert built is not None
        pod = built["spec"]["template"]["spec"]["securityContext"]
        assert pod.get("sysctls") == ([SYSCTL] if sysctl else None)
        assert pod["runAsUser"] == 10001 and pod["runAsNonRoot"] is True  # still "restricted"
        assert container(built)["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_a_port_change_adds_and_removes_the_sysctl() -> None:
    """5252 -> 80 -> 5252 against the stored Deployment: the sysctl left from 80 is drift (a key of the
    pod's securityContext we no longer set) and the patch removes it."""
    stored: dict[str, Any] = {}
    for port, sysctl in ((5252, False), (80, True), (5252, False)):
        desired = builders.backend_deployment(OWNER, make_spec(backend={"image": "b", "port": port}))
        added = hand_added(desired, stored)
        assert (not added and is_subset(desired, stored)) is False
        stored = merge(stored, undo_patch(desired, added))
        assert hand_added(desired, stored) == [] and is_subset(desired, stored)
        assert ("sysctls" in stored["spec"]["template"]["spec"]["securityContext"]) is sysctl
    by_hand = copy.deepcopy(stored)
    by_hand["spec"]["template"]["spec"]["securityContext"]["fsGroup"] = 2000
    assert hand_added(desired, by_hand) == [("spec", "template", "spec", "securityContext", "fsGroup")]


def test_the_api_container_reports_its_log_when_it_fails() -> None:
    """lastState.terminated.message is the end of the log of a container that exits with an error: the
    Degraded condition quotes a port it could not bind (status.bind_hint)."""
    spec = make_spec(canary={"image": "c", "replicas": 1, "weight": 10})
    for built in (builders.backend_deployment(OWNER, spec), builders.canary_deployment(OWNER, spec)):
        assert built is not None
        assert container(built)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_backend_pods_get_no_service_account_token() -> None:
    pod = builders.backend_deployment(OWNER, make_spec())["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False


def test_quantities_are_canonical() -> None:
    # The API server rewrites non-canonical quantities ("0.05" -> "50m"), which would look like drift.
    for deployment in (
        builders.backend_deployment(OWNER, make_spec()),
        builders.proxy_deployment(OWNER, make_spec()),
    ):
        resources = container(deployment)["resources"]
        for quantities in resources.values():
            for value in quantities.values():
                assert value.endswith(("m", "Mi")), value
                assert value[: -2 if value.endswith("Mi") else -1].isdigit()


def test_backend_service() -> None:
    service = builders.backend_service(OWNER, make_spec(backend={"image": "b", "port": 6000}))
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": SELECTOR_BACKEND,
        # named: during a port change each pod is reached on its own containerPort
        "ports": [{"name": "http", "port": 6000, "targetPort": "http", "protocol": "TCP"}],
    }
    container = builders.backend_deployment(OWNER, make_spec(backend={"image": "b", "port": 6000}))["spec"][
        "template"
    ]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 6000, "protocol": "TCP"}]


@pytest.mark.parametrize("replicas", [0, 1])
def test_no_pdb_for_one_replica_or_less(replicas: int) -> None:
    assert builders.backend_pdb(OWNER, make_spec(replicas=replicas)) is None


def test_pdb_for_more_than_one_replica() -> None:
    pdb = builders.backend_pdb(OWNER, make_spec(replicas=2))
    assert pdb is not None
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR_BACKEND}}


def test_proxy_deployment() -> None:
    spec = make_spec(proxy={"image": "n:1", "imagePullPolicy": "Never", "replicas": 3})
    deployment = builders.proxy_deployment(OWNER, spec)
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "proxy"
    assert pod["serviceAccountName"] == "hello-proxy"
    c = container(deployment)
    assert c["image"] == "n:1"
    assert c["imagePullPolicy"] == "Never"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert c["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9113, "protocol": "TCP"},
    ]
    assert env(deployment) == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "SCALEDAPI_CONFIGMAP": "hello-proxy",
        "SCALEDAPI_STATUS_CONFIGMAP": "hello-proxy-status",
        "NGINX_CONF_PATH": "/tmp/nginx/nginx.conf",  # noqa: S108
        "SCALEDAPI_METRICS_PORT": "9113",
    }
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9113",
        "prometheus.io/path": "/metrics",
    }


def test_proxy_metrics_off_means_no_port_no_scrape_annotations_and_no_metrics_server() -> None:
    spec = make_spec(proxy={"image": "n", "metrics": False})
    deployment = builders.proxy_deployment(OWNER, spec)
    assert [p["name"] for p in container(deployment)["ports"]] == ["http"]
    assert env(deployment)["SCALEDAPI_METRICS_PORT"] == "0"
    assert "annotations" not in deployment["spec"]["template"]["metadata"]
    assert builders.nginx_settings(spec).metrics is False


def test_proxy_metrics_must_be_a_boolean() -> None:
    with pytest.raises(SpecError, match=r"proxy\.metrics: must be true or false, got 'yes'"):
        make_spec(proxy={"image": "n", "metrics": "yes"})


def test_a_stopping_proxy_keeps_serving_until_kube_proxy_dropped_it_then_drains() -> None:
    deployment = builders.proxy_deployment(OWNER, make_spec())
    assert container(deployment)["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    # preStop delay + the longest proxied request (upstreamTimeoutSeconds) + a margin.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 5 + 30 + 5
    spec = make_spec(proxy={"image": "n", "terminationDelaySeconds": 0, "upstreamTimeoutSeconds": 10})
    quick = builders.proxy_deployment(OWNER, spec)
    assert "lifecycle" not in container(quick)
    assert quick["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 15


@pytest.mark.parametrize("component", ["backend", "proxy"])
def test_copies_spread_over_nodes_but_one_node_still_runs_them(component: str) -> None:
    build = builders.backend_deployment if component == "backend" else builders.proxy_deployment
    pod = build(OWNER, make_spec())["spec"]["template"]["spec"]
    assert pod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {**SELECTOR_BACKEND, "app.kubernetes.io/component": component}},
            "matchLabelKeys": ["pod-template-hash"],
        }
    ]


@pytest.mark.parametrize(("replicas", "wanted"), [(1, False), (2, True), (10, True)])
def test_proxy_pdb_only_with_more_than_one_proxy(replicas: int, wanted: bool) -> None:
    pdb = builders.proxy_pdb(OWNER, make_spec(proxy={"image": "n", "replicas": replicas}))
    assert (pdb is not None) == wanted
    if pdb is not None:
        assert pdb["metadata"]["name"] == "hello-proxy"
        selector = {**SELECTOR_BACKEND, "app.kubernetes.io/component": "proxy"}
        assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}


def test_proxy_service_node_port() -> None:
    service = builders.proxy_service(OWNER, make_spec())
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}
    ]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "proxy"


def test_proxy_service_cluster_ip_has_no_node_port() -> None:
    service = builders.proxy_service(OWNER, make_spec(proxy={"image": "n", "port": 80}))
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]


def test_proxy_configmap_carries_text_and_hash() -> None:
    cm = builders.proxy_configmap(OWNER, "text", "feedfacefeedface")
    assert cm["data"] == {"nginx.conf": "text"}
    assert cm["metadata"]["annotations"] == {CONFIG_HASH_ANNOTATION: "feedfacefeedface"}


def test_status_configmap_has_no_data() -> None:
    # The nginx pods write the data; the operator must never overwrite their reports.
    cm = builders.proxy_status_configmap(OWNER)
    assert "data" not in cm
    assert cm["metadata"]["name"] == "hello-proxy-status"


def test_proxy_role_is_least_privilege() -> None:
    role = builders.proxy_role(OWNER)
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["hello-proxy"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["hello-proxy-status"],
            "verbs": ["get", "patch"],
        },
    ]


def test_proxy_role_binding() -> None:
    binding = builders.proxy_role_binding(OWNER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "hello-proxy",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hello-proxy", "namespace": "demo"}]


def test_nginx_settings_from_spec() -> None:
    spec = make_spec(
        proxy={
            "image": "n",
            "workerProcesses": 4,
            "nextUpstreamTries": 2,
            "upstreamTimeoutSeconds": 9,
            "port": 80,
        }
    )
    assert builders.nginx_settings(spec) == NginxSettings(
        listen_port=8080,
        runtime_dir="/tmp/nginx",  # noqa: S108
        worker_processes=4,
        next_upstream_tries=2,
        upstream_timeout_seconds=9,
        metrics=True,
    )


def test_backends_accept_only_their_own_proxy_on_the_named_port() -> None:
    policy = builders.backend_network_policy(OWNER)
    assert policy["metadata"]["name"] == "hello-backend"
    assert policy["spec"] == {
        "podSelector": {"matchLabels": SELECTOR_BACKEND},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {
                        "podSelector": {
                            "matchLabels": {**SELECTOR_BACKEND, "app.kubernetes.io/component": "proxy"}
                        }
                    }
                ],
                "ports": [{"protocol": "TCP", "port": "http"}],
            }
        ],
    }
    # The named port is the backend container's, whatever spec.backend.port says.
    ports = container(builders.backend_deployment(OWNER, make_spec(backend={"image": "b", "port": 6000})))[
        "ports"
    ]
    assert [p["name"] for p in ports] == ["http"]


def test_the_proxy_accepts_anyone_on_its_port_and_only_its_namespace_and_monitoring_on_metrics() -> None:
    policy = builders.proxy_network_policy(OWNER, "monitoring")
    assert policy["metadata"]["name"] == "hello-proxy"
    proxy_selector = {**SELECTOR_BACKEND, "app.kubernetes.io/component": "proxy"}
    assert policy["spec"]["podSelector"] == {"matchLabels": proxy_selector}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": "http"}]},  # no `from`: anyone
        {
            "from": [
                {"podSelector": {}},  # the pods of the proxy's own namespace
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
            ],
            "ports": [{"protocol": "TCP", "port": "metrics"}],
        },
    ]
    nginx_ports = container(builders.proxy_deployment(OWNER, make_spec()))["ports"]
    assert [p["name"] for p in nginx_ports] == ["http", "metrics"]


@pytest.mark.parametrize("monitoring", [None, "", "demo"])
def test_without_another_monitoring_namespace_only_the_own_namespace_scrapes(monitoring: str | None) -> None:
    policy = builders.proxy_network_policy(OWNER, monitoring)
    assert policy["spec"]["ingress"][1]["from"] == [{"podSelector": {}}]
