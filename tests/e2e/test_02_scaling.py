"""Scenario 2: `kubectl scale scaledapi/NAME` to 5 and to 1; how long until new pods answer."""

from __future__ import annotations

import time

from tests.e2e import figures, kube, traffic
from tests.e2e import scaledapi as sapi


def test_scale_up_and_down(namespace: str, name: str) -> None:
    kube.apply(sapi.manifest(namespace, replicas=2))
    before = {p.name for p in sapi.wait_serving(namespace, name, 2)}

    # A client probing ~100 times a second sees each pod's first answer; a pod watch sees each Ready.
    with (
        sapi.PodWatcher(namespace, kube.backend_selector(name)) as watcher,
        traffic.Load(rate=100, workers=4, max_seconds=400) as probe,
    ):
        t_scale = time.monotonic()
        sapi.scale(namespace, name, 5)

        def all_five_answered() -> list[kube.PodState] | None:
            active = kube.active_pods(namespace, name)
            answered = probe.first_answers()
            ready = watcher.first_ready()
            if len(active) == 5 and all(p.ready and p.name in answered and p.name in ready for p in active):
                return active
            return None

        five = kube.wait_for(
            all_five_answered,
            180.0,
            0.5,
            what="all 5 pods to answer",
            describe=lambda: f"{sapi.describe(namespace, name)}; answered: {sorted(probe.first_answers())}",
        )
        t_all = time.monotonic()
        new = [p.name for p in five if p.name not in before]
        assert len(new) == 3, f"expected 3 new pods besides {before}, got {[p.name for p in five]}"
        answered = probe.first_answers()
        ready = watcher.first_ready()
        # Round robin over all 5 (and nothing else) from here on.
        sapi.wait_serving(namespace, name, 5, timeout=30.0)

        t_down = time.monotonic()
        sapi.scale(namespace, name, 1)

        def only_one_answers() -> str | None:
            active = kube.active_pods(namespace, name)
            last = probe.last(10)
            if len(active) != 1 or len(last) < 10 or last[0].sent < t_down:
                return None
            if all(a.instance == active[0].name for a in last):
                return active[0].name
            return None

        survivor = kube.wait_for(
            only_one_answers,
            120.0,
            0.5,
            what="only one pod to answer",
            describe=lambda: f"{sapi.describe(namespace, name)}; last: {[a.instance for a in probe.last(9)]}",
        )
        t_one = time.monotonic()
    sapi.wait_serving(namespace, name, 1, no_terminating=True)

    scale_to_answer = [answered[p] - t_scale for p in new]
    ready_to_answer = [answered[p] - ready[p] for p in new]
    figures.record(
        "2 scaling",
        "scale 2->5: kubectl scale to each new pod's first answer",
        figures.stats(scale_to_answer),
    )
    figures.record(
        "2 scaling", "scale 2->5: each new pod's Ready to its first answer", figures.stats(ready_to_answer)
    )
    figures.record(
        "2 scaling",
        "scale 2->5: kubectl scale to the last new pod's first answer_s",
        round(max(scale_to_answer), 3),
    )
    figures.record("2 scaling", "scale 2->5: all 5 answering after_s", round(t_all - t_scale, 3))
    figures.record("2 scaling", "scale 5->1: only one answering after_s", round(t_one - t_down, 3))
    figures.record("2 scaling", "probe", probe.summary())
    assert survivor in {p.name for p in five}
    assert all(v >= 0 for v in ready_to_answer), f"a pod answered before it was Ready: {ready_to_answer}"
