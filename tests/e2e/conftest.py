"""Fixtures and hooks of the kind suite: a cluster check, one namespace per scenario, diagnostics on
failure, and the figures report (reports/$E2E_REPORT.json, default e2e-report, also printed at the end).

Under pytest-xdist (hack/e2e.sh runs the scenarios not marked ``serial`` on several workers) each worker
is a process of its own: the controller clears leftovers once before the workers start, each worker
checks its own node ports (tests/e2e/ports.py), and the workers hand their figures to the controller,
which writes the one report.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e import figures, kube, ports
from tests.e2e.namespaces import Namespaces, Scenario, namespaces_gone
from tests.e2e.scaledapi import sample_name

SESSION_START = time.monotonic()
SESSION_START_WALL = datetime.now(UTC)
DIAGNOSTICS_DIR = kube.REPORTS_DIR / "e2e-diagnostics"
REPORT_NAME = os.environ.get("E2E_REPORT", "e2e-report")


scenario_key = pytest.StashKey[Scenario]()
OUTCOMES: dict[str, str] = {}


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Once per run, before any worker starts: remove the namespaces an aborted run left behind. A cluster
    that does not answer is left to the ``cluster`` fixture, which fails saying so."""
    config = session.config
    if _is_xdist_worker(config) or config.option.collectonly:
        return
    if kube.kubectl("get", "--raw", "/readyz", check=False, timeout=30.0).returncode != 0:
        return
    leftovers = [n["metadata"]["name"] for n in kube.list_json("namespaces", None, f"{kube.E2E_LABEL}=true")]
    if leftovers:
        kube.kubectl("delete", "namespace", *leftovers, "--wait=false", "--ignore-not-found")
        namespaces_gone(leftovers, 300.0)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Called in the controller for every worker's reports too, so OUTCOMES holds the whole run."""
    if report.failed:
        OUTCOMES[report.nodeid] = f"failed ({report.when})"
    elif report.when == "call":
        OUTCOMES[report.nodeid] = report.outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _is_xdist_worker(config):
        config.workeroutput["figures"] = json.dumps(figures.FIGURES)  # type: ignore[attr-defined]


def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's hook, in the controller: a worker finished; take its figures."""
    for scenario, values in json.loads(node.workeroutput.get("figures", "{}")).items():
        figures.FIGURES.setdefault(scenario, {}).update(values)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
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
    if config.option.collectonly or _is_xdist_worker(config):
        return
    report = _write_report()
    terminalreporter.section("ScaledApi e2e figures")
    terminalreporter.write_line(f"run time: {report['run_seconds']:.1f} s")
    for scenario, values in sorted(report["figures"].items()):
        terminalreporter.write_line(f"{scenario}: {json.dumps(values, sort_keys=True)}")
    terminalreporter.write_line(f"(written to {kube.REPORTS_DIR / (REPORT_NAME + '.json')})")


def _write_report() -> dict[str, Any]:
    report = {
        "started": SESSION_START_WALL.isoformat(timespec="seconds"),
        "run_seconds": round(time.monotonic() - SESSION_START, 1),
        "context": kube.CONTEXT,
        "outcomes": dict(sorted(OUTCOMES.items())),
        "figures": figures.FIGURES,
    }
    kube.REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    path = kube.REPORTS_DIR / (REPORT_NAME + ".json")
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


# --- the cluster ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def cluster() -> None:
    """Fail (never skip) unless the cluster of `make up` is there and this worker's node ports are free."""
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

    # Leftovers of an aborted run were removed once, by pytest_sessionstart; here, this worker's ports.
    holders = kube.node_port_holders(ports.NODE_PORTS)
    if holders:
        raise AssertionError(
            f"node ports {ports.NODE_PORTS} must be free for the suite, but these Services hold them: "
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
