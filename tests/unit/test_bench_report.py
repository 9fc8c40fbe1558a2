"""The pure parts of make bench (tests/bench): hey's output, percentiles, ratios, goals, the table, the
crictl stats, the plain twins of a ScaledApi's children and the spec-change latencies."""

from __future__ import annotations

import json

import pytest

from tests.bench import cluster, hey, operator_memory, operator_scale, report
from tests.bench.report import RATIO, Figure, Goal, SectionResult

SUMMARY = """
Summary:
  Total:\t10.0030 secs
  Slowest:\t0.0355 secs
  Fastest:\t0.0005 secs
  Average:\t0.0026 secs
  Requests/sec:\t1517.7024

  Total data:\t361760 bytes
  Size/request:\t119 bytes

Response time histogram:
  0.001 [1]\t|
  0.004 [2539]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■


Latency distribution:
  10% in 0.0009 secs
  50% in 0.0019 secs
  99% in 0.0120 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0000 secs, 0.0005 secs, 0.0355 secs

Status code distribution:
  [200]\t15000 responses
  [502]\t170 responses

Error distribution:
  [5]\tGet "http://10.96.0.10:8080/api/hello": dial tcp 10.96.0.10:8080: connect: connection refused
  [2]\tGet "http://10.96.0.10:8080/api/hello": context deadline exceeded

"""

ALL_FAILED = """
Summary:
  Total:\t2.0010 secs
  Slowest:\t0.0000 secs
  Requests/sec:\tNaN

Status code distribution:

Error distribution:
  [10]\tGet "http://127.0.0.1:30099/api/hello": dial tcp 127.0.0.1:30099: connect: connection refused
"""


def test_hey_summary_counts_statuses_errors_and_rates() -> None:
    result = hey.parse_summary(SUMMARY)
    assert result.seconds == pytest.approx(10.003)
    assert result.requests_per_second == pytest.approx(1517.7024)
    assert result.statuses == {"200": 15000, "502": 170}
    assert sum(result.errors.values()) == 7
    assert result.requests == 15177
    assert result.ok == 15000
    assert result.failures == 177  # non-200 answers and requests without one
    assert result.ok_per_second == pytest.approx(15000 / 10.003)
    assert result.latency_s == {"10": 0.0009, "50": 0.0019, "99": 0.012}
    assert result.as_dict()["failures"] == 177


def test_hey_summary_with_no_answer_at_all() -> None:
    result = hey.parse_summary(ALL_FAILED)
    assert result.requests_per_second == 0.0
    assert result.statuses == {}
    assert result.ok == 0
    assert result.failures == 10
    assert result.ok_per_second == 0.0


def test_hey_output_that_is_no_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="Total"):
        hey.parse_summary("response-time,DNS+dialup,DNS\n0.0038,0.0004,0.0000\n")


def test_percentile_interpolates_between_ranks() -> None:
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert report.percentile(values, 50) == pytest.approx(0.55)
    assert report.percentile(values, 95) == pytest.approx(0.955)
    assert report.percentile(values, 0) == 0.1
    assert report.percentile(values, 100) == 1.0
    assert report.percentile([3.0], 99) == 3.0
    assert report.percentile([], 50) is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        report.percentile(values, 101)


def test_median_ratio_and_summary() -> None:
    assert report.median([3.0, 1.0, 2.0]) == 2.0
    assert report.median([]) is None
    assert report.ratio(1870, 2524) == pytest.approx(0.741, abs=1e-3)
    assert report.ratio(1.0, 0.0) is None
    assert report.ratio(None, 2.0) is None
    stats = report.summary([0.5, 0.1, 0.3])
    assert stats["count"] == 3
    assert stats["median"] == 0.3
    assert stats["max"] == 0.5
    assert stats["values"] == [0.5, 0.1, 0.3]  # raw, in the order measured
    assert report.summary([]) == {"count": 0, "values": []}


def test_goals_judge_the_ratio_or_the_value() -> None:
    at_least = Goal(">=", 0.95)
    assert at_least.met(0.95) is True
    assert at_least.met(0.94) is False
    assert at_least.met(None) is None
    assert Goal("<=", 0.25).met(0.25) is True
    throughput = Figure("throughput", "req/s", 1870.0, 2524.0, unit="req/s", goal=at_least, goal_on=RATIO)
    assert throughput.ratio == pytest.approx(0.741, abs=1e-3)
    assert throughput.met is False
    assert throughput.goal_text() == "ratio >= 0.95"
    served = Figure("ready_to_served", "p95", 0.2, 1.1, goal=Goal("<=", 0.25))
    assert served.met is True  # the value is judged, the plain side is only for comparison
    assert served.goal_text() == "<= 0.25 s"
    assert Figure("x", "no goal", 1.0).met is None
    assert Figure("x", "missing", None, 1.0, goal=at_least, goal_on=RATIO).met is None


def test_table_lists_every_figure_and_every_failed_section() -> None:
    ok = SectionResult(
        "scale",
        figures=[Figure("scale", "2 -> 10", 4.3, 3.3, goal=Goal("<=", 1.05), goal_on=RATIO)],
        seconds=75.2,
    )
    failed = SectionResult("many", error="AssertionError: timed out\nafter 300 s", seconds=301.0)
    text = report.render_table([ok, failed])
    lines = text.splitlines()
    assert lines[0].split("|")[1:-1] == [
        f" {h.ljust(len(c) - 2)} " for h, c in zip(report.HEADER, lines[0].split("|")[1:-1], strict=True)
    ]
    row = next(line for line in lines if "2 -> 10" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["scale: 2 -> 10", "4.30 s", "3.30 s", "1.30", "ratio <= 1.05", "NO"]
    failed_row = next(line for line in lines if "many: FAILED" in line)
    assert "timed out after 300 s" in failed_row  # one line, whitespace folded
    assert "scale: 75 s" in text
    assert "many: 301 s (failed)" in text
    widths = {len(line) for line in lines[: len(lines) - 3]}
    assert len(widths) == 1  # aligned columns


def test_report_document_keeps_samples_and_environment() -> None:
    result = SectionResult("throughput", figures=[Figure("throughput", "f", 1.0)], samples={"raw": [1, 2]})
    document = report.report([result], {"node_count": 1}, {"rounds": 3})
    parsed = json.loads(report.dumps(document))
    assert parsed["environment"] == {"node_count": 1}
    assert parsed["options"] == {"rounds": 3}
    assert parsed["sections"]["throughput"]["samples"] == {"raw": [1, 2]}
    assert parsed["sections"]["throughput"]["figures"][0]["met"] is None
    assert parsed["table"][0]["figure"] == "throughput: f"


def test_number_format() -> None:
    assert report.fmt(None) == "-"
    assert report.fmt(2524.4, "req/s") == "2524 req/s"
    assert report.fmt(10.63, "s") == "10.6 s"
    assert report.fmt(4.349) == "4.35"
    assert report.fmt(0.8812, "s") == "0.881 s"
    assert report.fmt(0) == "0"


CRICTL = {
    "stats": [
        {
            "attributes": {
                "labels": {
                    "io.kubernetes.container.name": "operator",
                    "io.kubernetes.pod.name": "scaledapi-operator-abc",
                    "io.kubernetes.pod.namespace": "scaledapi-system",
                }
            },
            "cpu": {"timestamp": "2000", "usageCoreNanoSeconds": {"value": "1500"}},
            "memory": {"timestamp": "2000", "workingSetBytes": {"value": "56000000"}},
        },
        {
            "attributes": {
                "labels": {
                    "io.kubernetes.container.name": "backend",
                    "io.kubernetes.pod.name": "hello-backend-x",
                    "io.kubernetes.pod.namespace": "default",
                }
            },
            "cpu": {"timestamp": "2000", "usageCoreNanoSeconds": {"value": "1"}},
            "memory": {"timestamp": "2000", "workingSetBytes": {"value": "1"}},
        },
    ]
}


def test_crictl_stats_of_the_operator_only() -> None:
    stats = cluster.parse_crictl_stats(json.dumps(CRICTL), "scaledapi-system", "operator")
    assert stats == [cluster.ContainerStat("scaledapi-operator-abc", "operator", 56_000_000, 1500, 2000)]
    assert cluster.parse_crictl_stats(json.dumps({"stats": None}), "scaledapi-system") == []


def test_operator_memory_figures_take_the_larger_pod_median() -> None:
    samples = [
        {"t": 0, "phase": "before", "pod": "a", "leader": True, "working_set_mb": 50.0, "cpu_m": None},
        {"t": 0, "phase": "before", "pod": "b", "leader": False, "working_set_mb": 40.0, "cpu_m": None},
        {"t": 2, "phase": "before", "pod": "a", "leader": True, "working_set_mb": 52.0, "cpu_m": 3.0},
        {"t": 9, "phase": "after", "pod": "a", "leader": True, "working_set_mb": 75.0, "cpu_m": 2.0},
        {"t": 9, "phase": "after", "pod": "b", "leader": False, "working_set_mb": 41.0, "cpu_m": 1.0},
    ]
    assert operator_memory.phase_memory(s for s in samples if s["phase"] == "before") == 51.0
    assert operator_memory.leader_cpu(samples) == 2.5
    assert operator_memory.growth_percent(50.0, 75.0) == 50.0
    assert operator_memory.growth_percent(None, 75.0) is None
    cycles = [{"after": samples[3:]}, {"after": samples[3:]}]
    figures = {f.name: f for f in operator_memory.figures("operator", samples, cycles)}
    after = next(f for name, f in figures.items() if name.startswith("operator memory after"))
    assert after.scaledapi == 75.0
    assert after.met is False  # goal <= 60 MB


def test_plain_children_are_the_operator_children_without_owner() -> None:
    obj = cluster.scaledapi("bench-x", "many0", 2)
    children = cluster.plain_children(obj)
    kinds = sorted(c["kind"] for c in children)
    assert kinds.count("Deployment") == 2
    assert "PodDisruptionBudget" in kinds  # 2 replicas: the backend's budget
    for child in children:
        meta = child["metadata"]
        assert "ownerReferences" not in meta
        assert meta["namespace"] == "bench-x"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == cluster.PLAIN_MANAGED_BY
    backend = next(
        c for c in children if c["kind"] == "Deployment" and c["metadata"]["name"] == "many0-backend"
    )
    template_labels = backend["spec"]["template"]["metadata"]["labels"]
    assert template_labels["app.kubernetes.io/managed-by"] == cluster.PLAIN_MANAGED_BY
    assert "app.kubernetes.io/managed-by" not in backend["spec"]["selector"]["matchLabels"]
    (container,) = backend["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == cluster.SMALL_RESOURCES
    assert cluster.plain_backend(obj) == backend


def test_watch_predicates() -> None:
    assert cluster.scaledapi_ready(("3", "3", "True"))
    assert not cluster.scaledapi_ready(("3", "2", "True"))
    assert not cluster.scaledapi_ready(("3", "3", "False"))
    assert cluster.scaledapi_observed(("3", "3", ""))
    assert not cluster.scaledapi_observed(("3", ""))
    assert not cluster.scaledapi_observed(())
    assert cluster.deployment_available(("2", "2", "1", "1", "1"))
    assert not cluster.deployment_available(("2", "2", "1", "", "1"))
    assert not cluster.deployment_available(("2", "1", "1", "1", "1"))


def test_spec_change_latency_is_the_first_observed_generation_after_the_patch() -> None:
    seen = [
        cluster.Seen(0.5, "o1", ("4", "4", "")),  # before the patch: does not count
        cluster.Seen(1.2, "o1", ("5", "4", "")),
        cluster.Seen(1.7, "o1", ("5", "5", "")),
        cluster.Seen(1.9, "o2", ("2", "", "")),
    ]
    patches = [operator_scale.Patch("o1", 1.0, 5), operator_scale.Patch("o2", 1.0, 2)]
    latencies = operator_scale.observed_latencies(patches, seen)
    assert latencies[0] == pytest.approx(0.7)
    assert latencies[1] is None


def test_memory_growth_over_the_churn_window() -> None:
    samples = [{"t": float(t), "pod": "a", "working_set_mb": 100.0 + t / 60} for t in range(0, 601, 5)]
    growth = operator_scale.window_growth(samples, 0.0, 600.0)
    assert growth["window_s"] == 60.0
    assert growth["first_mb"] == pytest.approx(100.5)  # median of t = 0..60 s
    assert growth["growth_percent"] == pytest.approx((109.5 - 100.5) / 100.5 * 100)
