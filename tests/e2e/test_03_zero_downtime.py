"""Scenario 3: under a steady client, scale 2 -> 6 -> 2, delete a pod, roll a new image: no request fails."""

from __future__ import annotations

import time

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi

MIN_RATE = 50.0


def test_no_failed_request(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2))
    sapi.wait_serving(namespace, name, 2)
    timeline: list[tuple[float, str]] = []

    with traffic.Load(rate=100, workers=8, max_seconds=540, max_requests=60_000) as load:

        def step(what: str) -> None:
            timeline.append((time.monotonic() - load.started, what))

        def settle(replicas: int, image: str | None = None) -> None:
            """Old pods gone and the load's recent answers come from exactly the ready pods."""

            since: list[float] = []  # when the pods were last seen in the wanted state

            def settled() -> bool:
                all_pods = kube.pods(namespace, name)
                ok = len(all_pods) == replicas and all(p.ready and not p.terminating for p in all_pods)
                if ok and image is not None:
                    ok = all(p.images == (image,) for p in all_pods)
                if not ok:
                    since.clear()
                    return False
                if not since:
                    since.append(time.monotonic())
                last = load.last(4 * replicas)
                if len(last) < 4 * replicas or last[0].sent < since[0]:
                    return False
                return {a.instance for a in last} == {p.name for p in all_pods}

            kube.wait_for(
                settled,
                240.0,
                0.5,
                what=f"{replicas} ready pods serving the load",
                describe=lambda: f"{sapi.describe(namespace, name)}; last: "
                f"{[a.instance for a in load.last(12)]}; {load.summary()}",
            )
            step(f"settled at {replicas}")

        kube.wait_for(lambda: load.sent >= 50, 30.0, 0.2, what="the load to start")
        step("scale to 6")
        sapi.scale(namespace, name, 6)
        settle(6)

        step("scale to 2")
        sapi.scale(namespace, name, 2)
        settle(2)

        victim = kube.active_pods(namespace, name)[0].name
        step(f"delete pod {victim}")
        kube.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")
        settle(2)
        assert victim not in {p.name for p in kube.pods(namespace, name)}

        step(f"image -> {sapi.BACKEND_IMAGE_ALT}")
        kube.apply(sapi.manifest(namespace, replicas=2, backend={"image": sapi.BACKEND_IMAGE_ALT}))
        settle(2, image=sapi.BACKEND_IMAGE_ALT)
        # A last stretch of traffic after the rollout, then stop.
        end_from = time.monotonic()
        kube.wait_for(lambda: sum(load.served_since(end_from).values()) >= 100, 30.0, 0.2)
        step("stop")

    summary = load.summary()
    figures.record("3 zero downtime", "requests", summary)
    figures.record("3 zero downtime", "timeline", [f"t+{t:.1f}s {what}" for t, what in timeline])
    failures = load.failures()
    assert not failures, (
        f"{len(failures)} of {summary['sent']} requests failed:\n{load.describe_failures()}\n"
        f"timeline: {timeline}"
    )
    assert summary["rate_per_second"] >= MIN_RATE, f"the client managed only {summary['rate_per_second']}/s"


def test_the_only_copy_deleted_under_load_loses_no_request(namespace: str, name: str) -> None:
    """One replica, its pod deleted: while no pod is ready, nginx keeps sending to the terminating pod,
    which still serves through its preStop delay (as kube-proxy does), until the replacement is ready.
    The delay must outlast the replacement's start: 10 s here, for a pod that is ready in about 3."""
    kube.apply(sapi.manifest(namespace, replicas=1, backend={"terminationDelaySeconds": 10}))
    sapi.wait_serving(namespace, name, 1)
    (victim,) = [p.name for p in kube.active_pods(namespace, name)]

    with traffic.Load(rate=50, workers=4, max_seconds=120, max_requests=6_000) as load:
        kube.wait_for(lambda: load.sent >= 25, 30.0, 0.2, what="the load to start")
        deleted = time.monotonic()
        kube.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")

        def replaced() -> bool:
            served = load.served_since(deleted)
            return any(instance != victim for instance in served)

        kube.wait_for(
            replaced,
            60.0,
            0.2,
            what="the replacement pod to serve",
            describe=lambda: f"{sapi.describe(namespace, name)}; {load.summary()}",
        )
        switched = time.monotonic() - deleted
        # The old pod served until then; a stretch of traffic after, while it finishes terminating.
        kube.wait_for(lambda: victim not in {p.name for p in kube.pods(namespace, name)}, 60.0, 0.5)
        after = time.monotonic()
        kube.wait_for(lambda: sum(load.served_since(after).values()) >= 50, 30.0, 0.2)

    summary = load.summary()
    figures.record("3 zero downtime", "one copy deleted: requests", summary)
    figures.record("3 zero downtime", "one copy deleted: replacement serving after s", round(switched, 2))
    failures = load.failures()
    assert not failures, f"{len(failures)} of {summary['sent']} requests failed:\n{load.describe_failures()}"
