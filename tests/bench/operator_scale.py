"""operator_scale (opt-in, long): the operator's own work at scale, with no pod ever started.

1. A namespace whose ResourceQuota allows no pods; the operator scaled to 0; ``objects`` ScaledApis
   (default 1000) created; the operator scaled back. Measured: from the scale-up to every child written
   (counted per kind, metadata-only lists) and every status current (observedGeneration == generation,
   timestamped by a client-side watch).
2. At ``patch_objects`` (default 100) ScaledApis in a fresh such namespace: ``spec.backend.env`` of one
   object after the other patched at ``patch_rate`` per second for ``churn_seconds`` (each object at least
   once); for each patch, the time to observedGeneration >= the patch's generation: p50 and p99.
3. Operator memory and CPU sampled all along: the peak, and the growth over the churn (the median of its
   last tenth against its first, the larger pod).

The operator goes back to the manifest's replicas in any case. Client-side throttling: the operator's
standard-library client has no client-side rate limiter (client-go's default QPS 5 / burst 10 does not
apply), so no request waits on the client; the report says so rather than measuring zero.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

from tests.bench import cluster
from tests.bench.context import Context, Options
from tests.bench.report import Figure, Goal, SectionResult, median, percentile, summary
from tests.e2e import kube

CONVERGE_GOAL = Goal("<=", 60.0)
P99_GOAL = Goal("<=", 1.0)
MEMORY_GOAL = Goal("<=", 150.0)
GROWTH_GOAL = Goal("<=", 10.0)
CREATE_CHUNK = 100
CREATE_PARALLEL = 4
POLL_S = 2.0
THROTTLING_NOTE = (
    "client-side throttling: none possible, the operator's standard-library client (kopf's aiohttp too) "
    "has no client-side rate limiter, unlike client-go (QPS 5, burst 10 by default)"
)
META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
}
MANAGED = f"{kube.LABEL_MANAGED_BY}=scaledapi-operator"


@dataclass(frozen=True)
class Patch:
    name: str
    sent: float  # time.monotonic() just before the request
    generation: int  # metadata.generation the API server answered with


def observed_latencies(patches: Sequence[Patch], seen: Iterable[cluster.Seen]) -> list[float | None]:
    """For each patch, the time from its sending to the first watch line of its object, at or after
    then, whose observedGeneration is at least the patch's generation (None: never seen). Pure."""
    by_name: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for s in seen:
        observed = s.fields[1] if len(s.fields) > 1 else ""
        if observed.isdigit():
            by_name[s.name].append((s.at, int(observed)))
    for lines in by_name.values():
        lines.sort()
    out: list[float | None] = []
    for p in patches:
        hit = next((at for at, obs in by_name.get(p.name, []) if at >= p.sent and obs >= p.generation), None)
        out.append(None if hit is None else hit - p.sent)
    return out


def window_growth(samples: Sequence[Mapping[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Memory growth over [start, end] (sampler seconds): the larger pod's median in the last tenth
    (at least 30 s, at most a third) against its median in the first. Pure."""
    span = min(max(30.0, (end - start) / 10), (end - start) / 3)
    head = [s for s in samples if start <= s["t"] <= start + span]
    tail = [s for s in samples if end - span <= s["t"] <= end]

    def larger(part: Iterable[Mapping[str, Any]]) -> float | None:
        per_pod: dict[str, list[float]] = defaultdict(list)
        for s in part:
            per_pod[s["pod"]].append(float(s["working_set_mb"]))
        medians = [m for m in (median(v) for v in per_pod.values()) if m is not None]
        return max(medians) if medians else None

    first, last = larger(head), larger(tail)
    growth = None if first is None or last is None or first == 0 else (last - first) / first * 100
    return {"window_s": span, "first_mb": first, "last_mb": last, "growth_percent": growth}


class Api:
    """The Python kubernetes client on the bench's context: metadata-only counts, creates, patches."""

    def __init__(self) -> None:
        config.load_kube_config(context=kube.CONTEXT)  # type: ignore[no-untyped-call]
        self.client: Any = client.ApiClient()
        self.custom: Any = client.CustomObjectsApi(self.client)

    def count(self, kind: str, ns: str, selector: str = MANAGED) -> int:
        method, url, headers, body, post = self.client.param_serialize(
            "GET",
            PATHS[kind].format(ns=ns),
            query_params=[("labelSelector", selector)],
            header_params={"Accept": META_LIST},
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(method, url, headers, body, post, _request_timeout=60)
        return len(json.loads(response.read()).get("items") or [])

    def counts(self, ns: str, kinds: Iterable[str]) -> dict[str, int]:
        return {kind: self.count(kind, ns) for kind in kinds}

    def patch_env(self, ns: str, name: str, value: str) -> int:
        body = {"spec": {"backend": {"env": [{"name": "GREETING", "value": value}]}}}
        obj = self.custom.patch_namespaced_custom_object(
            kube.GROUP, kube.VERSION, ns, kube.PLURAL, name, body, _request_timeout=30
        )
        return int(obj["metadata"]["generation"])


def _objects(ns: str, count: int) -> list[dict[str, Any]]:
    return [cluster.scaledapi(ns, f"o{i:04d}", 1) for i in range(count)]


def _expected(ns: str, count: int) -> Counter[str]:
    """Children per kind of ``count`` such ScaledApis, from the operator's builders."""
    per_object = Counter(c["kind"] for c in cluster.plain_children(cluster.scaledapi(ns, "o0000", 1)))
    return Counter({kind: n * count for kind, n in per_object.items()})


def _create(objects: list[dict[str, Any]]) -> None:
    chunks = [objects[i : i + CREATE_CHUNK] for i in range(0, len(objects), CREATE_CHUNK)]
    with ThreadPoolExecutor(CREATE_PARALLEL) as pool:
        for future in [pool.submit(cluster.apply_all, chunk, "create") for chunk in chunks]:
            future.result()


def converge(
    api: Api,
    ns: str,
    names: set[str],
    expected: Counter[str],
    watch: cluster.Watch,
    t0: float,
    timeout: float,
) -> dict[str, Any]:
    """Poll child counts (and read the watch) until every child exists and every status is current."""
    timeline: list[dict[str, Any]] = []
    children_at: float | None = None
    leader_at: float | None = None
    deadline = t0 + timeout
    stop = threading.Event()
    while True:
        now = time.monotonic()
        counts = api.counts(ns, expected)
        observed = watch.first(cluster.scaledapi_observed, since=t0)
        current = len(names.intersection(observed))
        if leader_at is None and kube.operator_leader():
            leader_at = now
        timeline.append({"t": round(now - t0, 2), "children": sum(counts.values()), "observed": current})
        if children_at is None and all(counts[k] >= n for k, n in expected.items()):
            children_at = now
        if children_at is not None and current == len(names):
            last_observed = max(observed[n] for n in names)
            return {
                "children_s": round(children_at - t0, 2),
                "observed_s": round(last_observed - t0, 2),
                "done_s": round(max(children_at, last_observed) - t0, 2),
                "leader_after_s": None if leader_at is None else round(leader_at - t0, 2),
                "timeline": timeline,
            }
        if now > deadline:
            raise AssertionError(
                f"after {timeout:.0f} s: {current}/{len(names)} statuses current, children "
                f"{dict(counts)} of {dict(expected)} (timeline in the report)"
            )
        stop.wait(POLL_S)  # poll interval


def restart_phase(ctx: Context, api: Api, sampler: cluster.OperatorSampler, result: SectionResult) -> None:
    """1. ``objects`` ScaledApis created while the operator is stopped; the operator scaled back."""
    opts, samples = ctx.options, result.samples
    ns = ctx.namespaces.create("opscale", quota_pods=0)
    objects = _objects(ns, opts.objects)
    names = {o["metadata"]["name"] for o in objects}
    expected = _expected(ns, opts.objects)
    samples["objects"] = opts.objects
    samples["expected_children"] = dict(expected)
    sampler.set_phase("operator-stopped")
    cluster.scale_operator(0)
    kube.wait_for(lambda: not kube.operator_pods(), 180.0, 0.5, what="the operator pods to be gone")
    t = time.monotonic()
    _create(objects)
    samples["create_s"] = round(time.monotonic() - t, 2)
    print(f"  operator_scale: {opts.objects} ScaledApis created in {samples['create_s']:.1f} s")
    sampler.set_phase("converge")
    with cluster.Watch(ns, kube.PLURAL, cluster.SCALEDAPI_FIELDS) as watch:
        t0 = time.monotonic()
        cluster.scale_operator(kube.operator_manifest_replicas())
        try:
            phase = converge(api, ns, names, expected, watch, t0, opts.converge_timeout_s)
        finally:
            samples["converge_watch_restarts"] = watch.restarts
    samples["converge"] = phase
    result.figures.append(
        Figure(
            result.name,
            f"{opts.objects} ScaledApis, operator scaled up -> every child written and status current",
            phase["done_s"],
            goal=CONVERGE_GOAL,
        )
    )
    print(
        f"  operator_scale: children after {phase['children_s']} s, statuses after "
        f"{phase['observed_s']} s (leader after {phase['leader_after_s']} s)"
    )
    kube.wait_operator_ready()
    sampler.set_phase("delete")
    t = time.monotonic()
    ctx.namespaces.delete(ns, timeout=1800.0)
    samples["delete_s"] = round(time.monotonic() - t, 2)


def churn_phase(ctx: Context, api: Api, sampler: cluster.OperatorSampler, result: SectionResult) -> None:
    """2. Spec churn at ``patch_objects`` ScaledApis: spec change -> observedGeneration, memory growth."""
    opts, samples = ctx.options, result.samples
    sampler.set_phase("create-small")
    ns = ctx.namespaces.create("opscale-churn", quota_pods=0)
    objects = _objects(ns, opts.patch_objects)
    names = {o["metadata"]["name"] for o in objects}
    with cluster.Watch(ns, kube.PLURAL, cluster.SCALEDAPI_FIELDS) as watch:
        t0 = time.monotonic()
        _create(objects)
        samples["small_create"] = converge(
            api, ns, names, _expected(ns, opts.patch_objects), watch, t0, opts.converge_timeout_s
        )
        sampler.set_phase("churn")
        churn_start = sampler.elapsed()
        patches = churn(api, ns, sorted(names), opts)
        churn_end = sampler.elapsed()
        sampler.set_phase("after-churn")
        # Every patch seen through, then its latency from the watch.
        kube.wait_for(
            lambda: all(v is not None for v in observed_latencies(patches, watch.snapshot())),
            120.0,
            1.0,
            what="every spec change to be observed",
        )
        latencies = [v for v in observed_latencies(patches, watch.snapshot()) if v is not None]
        samples["churn_watch_restarts"] = watch.restarts
    seconds = round(patches[-1].sent - patches[0].sent, 1) if patches else 0.0
    growth = window_growth(sampler.snapshot(), churn_start, churn_end)
    samples["churn"] = {
        "patches": len(patches),
        "seconds": seconds,
        "rate_per_s": opts.patch_rate,
        "latency_s": summary(latencies),
        "memory": growth,
    }
    result.figures += [
        Figure(
            result.name,
            f"spec change -> observedGeneration at {opts.patch_objects} objects, p50 of {len(latencies)}",
            percentile(latencies, 50),
        ),
        Figure(
            result.name,
            f"spec change -> observedGeneration at {opts.patch_objects} objects, p99 of {len(latencies)}",
            percentile(latencies, 99),
            goal=P99_GOAL,
        ),
        Figure(
            result.name,
            f"operator memory growth over {seconds:.0f} s of spec churn ({len(patches)} patches)",
            growth["growth_percent"],
            unit="%",
            goal=GROWTH_GOAL,
        ),
    ]


def run(ctx: Context, result: SectionResult) -> None:
    api = Api()
    result.notes.append(THROTTLING_NOTE)
    sampler = cluster.OperatorSampler(interval=5.0).start()
    try:
        restart_phase(ctx, api, sampler, result)
        churn_phase(ctx, api, sampler, result)
    finally:
        sampler.stop()
        operator_samples = sampler.snapshot()
        result.samples["operator"] = operator_samples
        result.samples["sampler_errors"] = sampler.errors[:20]
        result.figures.append(
            Figure(
                result.name,
                "operator memory (working set), peak of the section",
                cluster.max_working_set(operator_samples),
                unit="MB",
                goal=MEMORY_GOAL,
            )
        )
        result.samples["operator_logs"] = operator_log_summary()
        cluster.restore_operator()


def churn(api: Api, ns: str, names: list[str], opts: Options) -> list[Patch]:
    """Patch one object after the other at ``patch_rate``/s for ``churn_seconds`` (each at least once)."""
    interval = 1.0 / opts.patch_rate
    duration = max(opts.churn_seconds, len(names) * interval)
    patches: list[Patch] = []
    pace = threading.Event()
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < duration:
        name = names[k % len(names)]
        sent = time.monotonic()
        patches.append(Patch(name, sent, api.patch_env(ns, name, f"Hello {k}")))
        k += 1
        if k % 100 == 0:
            print(f"  operator_scale: {k} spec changes sent")
        pace.wait(max(0.0, start + k * interval - time.monotonic()))  # the patch rate, not a wait for a state
    return patches


def operator_log_summary() -> dict[str, Any]:
    """What the leader's log says about throttling and errors (its last 5000 lines)."""
    leader = kube.operator_leader()
    if leader is None:
        return {"leader": None}
    result = kube.kubectl(
        "logs", "-n", kube.OPERATOR_NAMESPACE, leader, "--tail=5000", check=False, timeout=60.0
    )
    lines = result.stdout.splitlines()
    return {
        "leader": leader,
        "lines": len(lines),
        "429_or_throttled": sum(1 for line in lines if " 429" in line or "hrottl" in line),
        "errors": sum(1 for line in lines if "ERROR" in line or "Traceback" in line),
        "tail": lines[-20:],
    }
