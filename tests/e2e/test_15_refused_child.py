"""Scenario 15: a child the API server refuses does not leave the ScaledApi without a status.

ScaledApi A holds node port 30081; ScaledApi B (another namespace) asks for the same one, so the API
server refuses B's Service NAME-proxy (422, port already allocated). Within 30 s B is Degraded with the
API server's message naming Service/NAME-proxy, every other child of B exists, and over the next minute
fewer than 5 Warning events are posted on B (the operator retries with a growing delay instead of
failing a kopf handler every 5 s). A keeps its Service.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.e2e import figures, kube, ports
from tests.e2e import scaledapi as sapi
from tests.e2e.namespaces import Namespaces

NODE_PORT = ports.SPARE
DEGRADED_LIMIT_S = 30.0
EVENT_WINDOW_S = 60.0
MAX_WARNINGS = 5  # per EVENT_WINDOW_S, exclusive
OTHER_CHILDREN = (
    ("deployment", "{name}-backend"),
    ("service", "{name}-backend"),
    ("deployment", "{name}-proxy"),
    ("configmap", "{name}-proxy"),
    ("configmap", "{name}-proxy-status"),
    ("serviceaccount", "{name}-proxy"),
    ("role", "{name}-proxy"),
    ("rolebinding", "{name}-proxy"),
    ("poddisruptionbudget", "{name}-backend"),
    ("networkpolicy", "{name}-backend"),
    ("networkpolicy", "{name}-proxy"),
)


def _warnings(ns: str, name: str) -> int:
    return sum(count for (kind, _), count in sapi.events(ns, name).items() if kind == "Warning")


def _missing_children(ns: str, name: str) -> list[str]:
    return [
        f"{kind}/{pattern.format(name=name)}"
        for kind, pattern in OTHER_CHILDREN
        if kube.get_json(kind, pattern.format(name=name), ns) is None
    ]


def test_a_refused_child_degrades_and_the_rest_is_reconciled(namespaces: Namespaces, name: str) -> None:
    holder_ns = namespaces.create("-holder")
    refused_ns = namespaces.create("-refused")

    kube.apply(sapi.manifest(holder_ns, replicas=1, node_port=NODE_PORT))
    kube.wait_for(
        lambda: (kube.get_json("service", f"{name}-proxy", holder_ns) or {}).get("spec", {}).get("ports"),
        60.0,
        0.5,
        what=f"service {holder_ns}/{name}-proxy to hold node port {NODE_PORT}",
    )

    started = time.monotonic()
    kube.apply(sapi.manifest(refused_ns, replicas=2, node_port=NODE_PORT))

    def degraded() -> dict[str, Any] | None:
        cond = kube.condition(sapi.get(refused_ns, name), "Degraded")
        return cond if cond and cond.get("status") == "True" else None

    cond = kube.wait_for(
        degraded,
        DEGRADED_LIMIT_S,
        0.5,
        what=f"{refused_ns}/{name} to report Degraded within {DEGRADED_LIMIT_S:.0f} s",
        describe=lambda: sapi.describe(refused_ns, name),
    )
    degraded_after = time.monotonic() - started
    message = str(cond.get("message", ""))
    assert cond.get("reason") == "ChildRejected", cond
    assert f"Service/{name}-proxy" in message, cond
    assert "allocated" in message or "422" in message, f"not the API server's message: {cond}"

    kube.wait_for(
        lambda: not _missing_children(refused_ns, name),
        60.0,
        0.5,
        what="every other child of the refused ScaledApi to exist",
        describe=lambda: f"missing: {_missing_children(refused_ns, name)}",
    )
    assert kube.get_json("service", f"{name}-proxy", refused_ns) is None

    # Watch the Warning events on B for a minute; fail as soon as there are too many.
    at_start = _warnings(refused_ns, name)
    window_end = time.monotonic() + EVENT_WINDOW_S
    pause = threading.Event()
    seen = 0
    while True:
        seen = _warnings(refused_ns, name) - at_start
        assert seen < MAX_WARNINGS, f"{seen} Warning events on {refused_ns}/{name} within a minute"
        remaining = window_end - time.monotonic()
        if remaining <= 0:
            break
        pause.wait(min(5.0, remaining))  # poll interval of the observation window above
    still = kube.condition(sapi.get(refused_ns, name), "Degraded")
    assert still is not None and still.get("reason") == "ChildRejected", still

    holder = kube.get_json("service", f"{name}-proxy", holder_ns)
    assert holder is not None
    assert [p.get("nodePort") for p in holder["spec"]["ports"]] == [NODE_PORT]
    figures.record("15 refused child", "Degraded after_s", round(degraded_after, 1))
    figures.record("15 refused child", "Warning events in the next minute", seen)
    figures.record("15 refused child", "Degraded condition", {k: cond.get(k) for k in ("reason", "message")})
