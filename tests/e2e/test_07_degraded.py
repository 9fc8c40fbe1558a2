"""Scenario 7: an image that does not exist makes the ScaledApi Degraded with the reason, while a ScaledApi
of the same name in another namespace keeps serving undisturbed."""

from __future__ import annotations

import time

from tests.e2e import figures, kube, ports, traffic
from tests.e2e import scaledapi as sapi
from tests.e2e.namespaces import Namespaces

MISSING_IMAGE = "scaledapi/backend:does-not-exist"
PULL_WORDS = ("imagepull", "errimage", "pull")


def test_missing_image_degrades_only_its_own(namespaces: Namespaces, name: str) -> None:
    good_ns = namespaces.create("-good")
    bad_ns = namespaces.create("-bad")
    good_port = sapi.HOST_PORTS[ports.SPARE]

    kube.apply(sapi.manifest(good_ns, replicas=2, node_port=ports.SPARE))
    good_pods = {p.name for p in sapi.wait_serving(good_ns, name, 2, port=good_port)}

    with traffic.Load(port=good_port, rate=20, workers=1, max_seconds=300) as load:
        kube.wait_for(lambda: load.sent >= 10, 30.0, 0.2, what="the client of the good ScaledApi to start")
        started = time.monotonic()
        kube.apply(
            sapi.manifest(
                bad_ns, replicas=2, node_port=None,
                backend={"image": MISSING_IMAGE, "imagePullPolicy": "IfNotPresent"},
            )
        )  # fmt: skip

        def degraded() -> dict[str, str] | None:
            cond = kube.condition(sapi.get(bad_ns, name), "Degraded")
            if cond is None or cond.get("status") != "True":
                return None
            return {k: str(cond.get(k, "")) for k in ("reason", "message")}

        cond = kube.wait_for(
            degraded,
            180.0,
            1.0,
            what=f"{bad_ns}/{name} to report Degraded",
            describe=lambda: sapi.describe(bad_ns, name),
        )
        degraded_after = time.monotonic() - started
        text = f"{cond['reason']} {cond['message']}".lower()
        assert any(w in text for w in PULL_WORDS), f"Degraded does not name the pull problem: {cond}"
        ready = kube.condition(sapi.get(bad_ns, name), "Ready")
        assert ready is None or ready.get("status") != "True", f"Ready while Degraded: {ready}"

        # Keep the client going a while longer while the operator works on the broken one.
        after = time.monotonic()
        kube.wait_for(lambda: sum(load.served_since(after).values()) >= 100, 60.0, 0.5)

    summary = load.summary()
    figures.record("7 degraded", "Degraded after_s", round(degraded_after, 1))
    figures.record("7 degraded", "Degraded condition", cond)
    figures.record("7 degraded", "other namespace's client", summary)
    assert not load.failures(), f"the good ScaledApi failed requests:\n{load.describe_failures()}"
    assert set(summary["per_pod"]) == good_pods, f"answers came from {summary['per_pod']}, pods {good_pods}"
    assert {p.name for p in kube.active_pods(good_ns, name)} == good_pods, "the good ScaledApi's pods changed"
    good = sapi.get(good_ns, name)
    good_degraded = kube.condition(good, "Degraded")
    assert good_degraded is None or good_degraded.get("status") != "True", (
        f"good one Degraded: {good_degraded}"
    )
