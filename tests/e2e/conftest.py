"""Fixtures and hooks of the kind suite: a cluster check, one namespace per scenario, diagnostics on
failure, and the figures report (reports/e2e-report.json, also printed at the end of the run)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e import figures, kube
from tests.e2e.namespaces import Namespaces, Scenario, namespaces_gone
from tests.e2e.scaledapi import sample_name

SESSION_START = time.monotonic()
SESSION_START_WALL = datetime.now(UTC)
DIAGNOSTICS_DIR = kube.REPORTS_DIR / "e2e-diagnostics"
NODE_PORTS = (30080, 30081, 30082)


scenario_key = pytest.StashKey[Scenario]()
OUTCOMES: dict[str, str] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    if report.failed:
        OUTCOMES[item.nodeid] = f"failed ({report.when})"
    elif report.when == "call":
        OUTCOMES[item.nodeid] = report.outcome
    if report.failed and report.when in ("setup", "call"):
        scenario = item.stash.get(scenario_key, None)
        if scenario is not None and scenario.namespaces:
            # Gathered now, while the namespace still exists; shown with the failure and kept in a file.
            text = kube.diagnostics(scenario.namespaces, scenario.names)
            report.sections.append(("scaledapi diagnostics", text))
            DIAGNOSTICS_DIR.mkdir(parents=True, exist_ok=True)
            path = DIAGNOSTICS_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid) + ".txt")
            path.write_text(text)
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.option.collectonly:
        return
    report = _write_report()
    terminalreporter.section("ScaledApi e2e figures")
    terminalreporter.write_line(f"run time: {report['run_seconds']:.1f} s")
    for scenario, values in sorted(report["figures"].items()):
        terminalreporter.write_line(f"{scenario}: {json.dumps(values, sort_keys=True)}")
    terminalreporter.write_line(f"(written to {kube.REPORTS_DIR / 'e2e-report.json'})")


def _write_report() -> dict[str, Any]:
    report = {
        "started": SESSION_START_WALL.isoformat(timespec="seconds"),
        "run_seconds": round(time.monotonic() - SESSION_START, 1),
        "context": kube.CONTEXT,
        "outcomes": dict(sorted(OUTCOMES.items())),
        "figures": figures.FIGURES,
    }
    kube.REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    (kube.REPORTS_DIR / "e2e-report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


# --- the cluster ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def cluster() -> None:
    """Fail (never skip) unless the cluster of `make up` is there; clear what an aborted run left."""
    result = kube.kubectl("get", "--raw", "/readyz", check=False, timeout=30.0)
    if result.returncode != 0:
        raise AssertionError(
            f"the kind cluster (context {kube.CONTEXT}) does not answer: {result.stderr.strip()}; "
            + kube.MAKE_UP_HINT
        )
    if kube.get_json("crd", kube.CRD_NAME) is None:
        raise AssertionError(f"CRD {kube.CRD_NAME} is not installed: {kube.MAKE_UP_HINT}")
    operator = kube.operator_deployment_name()
    dep = kube.get_json("deployment", operator, kube.OPERATOR_NAMESPACE)
    if dep is None:
        raise AssertionError(
            f"deployment {kube.OPERATOR_NAMESPACE}/{operator} is missing: {kube.MAKE_UP_HINT}"
        )
    if dep["spec"].get("replicas") == 0:  # an interrupted measuring run scaled it down
        kube.kubectl("scale", "deployment", operator, "-n", kube.OPERATOR_NAMESPACE, "--replicas=1")
    kube.wait_operator_ready()

    leftovers = [n["metadata"]["name"] for n in kube.list_json("namespaces", None, f"{kube.E2E_LABEL}=true")]
    if leftovers:
        kube.kubectl("delete", "namespace", *leftovers, "--wait=false", "--ignore-not-found")
        namespaces_gone(leftovers, 300.0)

    holders = kube.node_port_holders(NODE_PORTS)
    if holders:
        raise AssertionError(
            f"node ports {NODE_PORTS} must be free for the suite, but these Services hold them: "
            f"{', '.join(holders)} (a sample left by `make up`? kubectl delete -f manifests/scaledapi.yaml)"
        )


# --- one namespace per scenario ---------------------------------------------------------------------------


def _make_namespaces(request: pytest.FixtureRequest, scenario: Scenario) -> Generator[Namespaces]:
    prefix = re.sub(r"^test_", "", request.node.name.split("[")[0]).replace("_", "-")[:30]
    manager = Namespaces(prefix, scenario)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def namespaces(request: pytest.FixtureRequest, cluster: None) -> Iterator[Namespaces]:
    """Factory of namespaces for a scenario that needs more than one."""
    scenario = Scenario()
    request.node.stash[scenario_key] = scenario
    yield from _make_namespaces(request, scenario)


@pytest.fixture
def namespace(namespaces: Namespaces) -> str:
    """A fresh Pod Security "restricted" namespace, deleted (and waited for) after the test."""
    return namespaces.create()


@pytest.fixture
def name(request: pytest.FixtureRequest, namespaces: Namespaces) -> str:
    """The sample's ScaledApi name (same in every namespace), registered for the diagnostics."""
    value = sample_name()
    namespaces.scenario.names.add(value)
    return value


@pytest.fixture(scope="module")
def module_namespace(request: pytest.FixtureRequest, cluster: None) -> Iterator[str]:
    """One namespace shared by the cases of a module (server-side dry runs create nothing in it)."""
    scenario = Scenario()
    gen = _make_namespaces(request, scenario)
    manager = next(gen)
    try:
        yield manager.create()
    finally:
        gen.close()
