"""Failed reconciles are tried again with a growing delay, whatever triggered them (a child event too),
the handlers never raise, and a failure that persists posts one Warning event, not one per retry.

A fake clock drives the retry queue; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from scaledapi_operator import handlers
from scaledapi_operator.retry import Backoff, RetryQueue
from scaledapi_operator.status import Transition
from tests.unit.test_reconcile import FakeKube, refusal, scaledapi

KEY = ("demo", "hello")
NODE_PORT_TAKEN = (
    'Service "hello-proxy" is invalid: spec.ports[0].nodePort: provided port is already allocated'
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kube() -> FakeKube:
    fake = FakeKube()
    fake.scaledapis[KEY] = scaledapi()
    return fake


@pytest.fixture
def retries(clock: Clock) -> RetryQueue:
    return RetryQueue(clock=clock)


@pytest.fixture
def memo(kube: FakeKube, retries: RetryQueue) -> kopf.Memo:
    memo = kopf.Memo()
    memo.kube = kube
    memo.retries = retries
    memo.background = set()
    return memo


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[Transition]:
    """What the kopf handlers post through kopf's event queue."""
    found: list[Transition] = []
    monkeypatch.setattr(handlers, "kopf_post", lambda body, transition: found.append(transition))
    return found


# The handlers as kopf calls them: keyword arguments only (the decorators hide their signatures).
on_create: Any = handlers.on_create


def on_child_event(**kwargs: Any) -> None:
    """The async child handler run to its end, with the pass it started in the background."""

    async def deliver() -> None:
        await handlers.on_child_event(**kwargs)
        await asyncio.gather(*kwargs["memo"].background)

    asyncio.run(deliver())


def child_event_body() -> dict[str, Any]:
    owner = {"apiVersion": "scaledapi.dev/v1alpha1", "kind": "ScaledApi", "name": "hello", "controller": True}
    return {"kind": "Pod", "metadata": {"name": "hello-backend-x", "ownerReferences": [owner]}}


def timeout() -> TimeoutError:
    return TimeoutError("/apis/scaledapi.dev: timed out")


# --- the queue ---------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_limit() -> None:
    backoff = Backoff(first=5.0, factor=2.0, limit=300.0)
    assert [backoff.delay(n) for n in range(1, 10)] == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert backoff.delay(0) == 0


def test_a_due_scaledapi_is_handed_out_once_and_a_success_clears_it(
    clock: Clock, retries: RetryQueue
) -> None:
    assert retries.failed(KEY) == 5
    assert retries.take_due() == []
    clock.now += 4.9
    assert retries.take_due() == []
    clock.now += 0.1
    assert retries.take_due() == [KEY]
    assert retries.take_due() == []  # under way: not handed out twice
    assert retries.due_in(KEY) is None
    assert retries.failed(KEY) == 10  # the try failed again: a longer delay
    assert retries.failures(KEY) == 2
    retries.succeeded(KEY)
    assert retries.failures(KEY) == 0 and retries.due_in(KEY) is None
    assert retries.failed(KEY) == 5  # a new run of failures starts from the first delay


def test_scaledapis_that_are_gone_are_forgotten(clock: Clock, retries: RetryQueue) -> None:
    retries.seen(("a", "x"))
    retries.seen(("b", "y"))
    retries.failed(("a", "x"))
    retries.failed(("b", "y"))
    retries.gone(("a", "x"))
    assert retries.known() == [("b", "y")]
    clock.now += 10
    assert retries.take_due() == [("b", "y")]


# --- the handlers ------------------------------------------------------------------------------------------


def test_a_failed_reconcile_from_a_child_event_is_retried_not_dropped(
    kube: FakeKube, retries: RetryQueue, memo: kopf.Memo, clock: Clock, posted: list[Transition]
) -> None:
    kube.refuse[("get", "ScaledApi", "hello")] = timeout()
    on_child_event(body=child_event_body(), namespace="demo", memo=memo)  # does not raise
    assert retries.failures(KEY) == 1
    assert retries.due_in(KEY) == 5
    assert kube.objects == {}

    kube.refuse.clear()  # the API server answers again
    handlers.retry_due(kube, retries)
    assert kube.objects == {}  # not due yet
    clock.now += 5
    handlers.retry_due(kube, retries)
    assert ("Deployment", "demo", "hello-backend") in kube.objects
    assert kube.scaledapis[KEY]["status"]["observedGeneration"] == 1
    assert retries.failures(KEY) == 0 and retries.due_in(KEY) is None


def test_a_refused_child_from_a_child_event_is_retried(
    kube: FakeKube, retries: RetryQueue, memo: kopf.Memo, clock: Clock, posted: list[Transition]
) -> None:
    kube.refuse[("create", "Service", "hello-proxy")] = refusal(422, NODE_PORT_TAKEN)
    on_child_event(body=child_event_body(), namespace="demo", memo=memo)
    assert retries.due_in(KEY) == 5
    assert kube.scaledapis[KEY]["status"]["conditions"][2]["reason"] == "ChildRejected"
    kube.refuse.clear()
    clock.now += 5
    handlers.retry_due(kube, retries)
    assert ("Service", "demo", "hello-proxy") in kube.objects
    assert retries.due_in(KEY) is None
    degraded = kube.scaledapis[KEY]["status"]["conditions"][2]
    assert (degraded["type"], degraded["status"]) == ("Degraded", "False")


@pytest.mark.parametrize("handler", [handlers.on_create, handlers.on_update, handlers.on_resume])
def test_the_scaledapi_handlers_never_raise_and_record_the_failure(
    kube: FakeKube, retries: RetryQueue, memo: kopf.Memo, posted: list[Transition], handler: Any
) -> None:
    kube.refuse[("patch", "ScaledApi/status", "hello")] = refusal(500, "etcdserver: request timed out")
    handler(name="hello", namespace="demo", memo=memo)
    assert retries.failures(KEY) == 1
    assert posted == []  # nothing was written, so nothing is announced


def test_a_persistent_refusal_backs_off_and_posts_one_warning(
    kube: FakeKube, retries: RetryQueue, memo: kopf.Memo, clock: Clock, posted: list[Transition]
) -> None:
    """Ten minutes of a node port that another ScaledApi holds: five of retries alone, then five more
    with a child event every 10 s (each reconciles, fails the same way and pushes the retry out)."""
    kube.refuse[("create", "Service", "hello-proxy")] = refusal(422, NODE_PORT_TAKEN)
    on_create(name="hello", namespace="demo", memo=memo)
    tries_at = [0]
    delays = [retries.due_in(KEY)]
    for second in range(1, 601):
        clock.now += 1
        due = retries.due_in(KEY)
        if due is not None and due <= 0:
            handlers.retry_due(kube, retries)
            tries_at.append(second)
            delays.append(retries.due_in(KEY))
        if second > 300 and second % 10 == 0:
            on_child_event(body=child_event_body(), namespace="demo", memo=memo)
    warnings = [t for t in posted if t.type == "Warning"] + [e for e in kube.events if e[0] == "Warning"]
    assert len(warnings) == 1, warnings
    assert tries_at[:6] == [0, 5, 15, 35, 75, 155]  # 5 s doubling; the resync adds one every 30 s
    assert delays[:6] == [5, 10, 20, 40, 80, 160]
    assert retries.failures(KEY) == 6 + 30  # and every child event's reconcile failed the same way
    degraded = kube.scaledapis[KEY]["status"]["conditions"][2]
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildRejected")
    assert "Service/hello-proxy" in degraded["message"] and "already allocated" in degraded["message"]
    assert ("Deployment", "demo", "hello-proxy") in kube.objects  # the other children are there


def test_the_resync_reconciles_the_known_scaledapis_without_listing_them(
    kube: FakeKube, retries: RetryQueue, memo: kopf.Memo, posted: list[Transition]
) -> None:
    """No cluster-wide list (the namespaced install may not): what a handler saw, until it is gone."""
    other = scaledapi(name="other")
    other["metadata"]["namespace"] = "team-b"
    kube.scaledapis[("team-b", "other")] = other
    on_create(name="hello", namespace="demo", memo=memo)
    on_create(name="other", namespace="team-b", memo=memo)
    assert retries.known() == [KEY, ("team-b", "other")]
    kube.refuse[("create", "Service", "hello-proxy")] = refusal(422, NODE_PORT_TAKEN)
    del kube.objects[("Service", "demo", "hello-proxy")]  # deleted by hand, and its port taken meanwhile
    del kube.scaledapis[("team-b", "other")]  # deleted while the operator was not looking
    kube.refuse[("list", "ScaledApi", "")] = refusal(403, "cannot list resource scaledapis at the cluster")
    handlers.resync_all(kube, retries)
    assert retries.failures(KEY) == 1
    assert retries.known() == [KEY]
    assert [e[:2] for e in kube.events] == [("Warning", "ChildRejected")]


def test_stale_gives_the_longest_waiting_first_and_at_most_the_limit(clock: Clock) -> None:
    retries = RetryQueue(clock=clock)
    for name in ("a", "b", "c"):
        retries.seen(("ns", name))
    clock.now += 1
    retries.succeeded(("ns", "b"))  # at 1001
    clock.now += 1
    retries.succeeded(("ns", "a"))  # at 1002
    retries.seen(("ns", "a"))  # seen again: its last pass is kept
    assert retries.stale(age=30, limit=10) == [("ns", "c")]  # never reconciled
    clock.now += 29
    assert retries.stale(age=30, limit=10) == [("ns", "c"), ("ns", "b")]
    clock.now += 1
    assert retries.stale(age=30, limit=10) == [("ns", "c"), ("ns", "b"), ("ns", "a")]
    assert retries.stale(age=30, limit=2) == [("ns", "c"), ("ns", "b")]


def test_the_periodic_resync_takes_only_stale_scaledapis_a_batch_at_a_time(
    kube: FakeKube, retries: RetryQueue, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "RESYNC_BATCH", 2)
    names = [f"api{i}" for i in range(5)]
    for name in names:
        kube.scaledapis[("demo", name)] = scaledapi(name=name)
        retries.seen(("demo", name))
    reconciled: list[str] = []
    original = kube.get_scaledapi

    def counting(namespace: str, name: str) -> dict[str, Any] | None:
        reconciled.append(name)
        return original(namespace, name)

    monkeypatch.setattr(kube, "get_scaledapi", counting)
    handlers.resync_stale(kube, retries)
    assert reconciled == ["api0", "api1"]
    handlers.resync_stale(kube, retries)
    assert reconciled[2:] == ["api2", "api3"]
    clock.now += handlers.RESYNC_SECONDS - 1
    handlers.resync_stale(kube, retries)
    assert reconciled[4:] == ["api4"]  # the others had a pass less than RESYNC_SECONDS ago
    clock.now += 1
    handlers.resync_stale(kube, retries)
    assert reconciled[5:] == ["api0", "api1"]


def test_kopf_requests_and_watches_have_deadlines() -> None:
    settings = kopf.OperatorSettings()
    handlers.apply_settings(settings)
    assert settings.networking.request_timeout == handlers.KOPF_REQUEST_TIMEOUT_SECONDS
    assert settings.networking.connect_timeout == handlers.KOPF_CONNECT_TIMEOUT_SECONDS
    assert settings.watching.connect_timeout == handlers.KOPF_CONNECT_TIMEOUT_SECONDS
    server, client = settings.watching.server_timeout, settings.watching.client_timeout
    assert server is not None and client is not None and 0 < server < client
    # kopf sends str(server_timeout) as timeoutSeconds; the API server accepts only an integer there.
    assert str(server).isdigit(), f"timeoutSeconds would be {str(server)!r}"
    assert settings.watching.inactivity_timeout is not None


class Standby:
    """A Leadership that another replica holds the Lease against."""

    leading = False


def test_a_standby_reconciles_nothing_but_knows_every_scaledapi_for_when_it_leads(
    kube: FakeKube, retries: RetryQueue, memo: kopf.Memo, posted: list[Transition]
) -> None:
    memo.leadership = Standby()
    on_create(name="hello", namespace="demo", memo=memo)
    on_child_event(body=child_event_body(), namespace="demo", memo=memo)
    assert kube.objects == {} and kube.writes == []
    assert retries.known() == [KEY]
    # Leading now: its first pass (resync_all) reconciles what the standby noted.
    handlers.resync_all(kube, retries)
    assert ("Deployment", "demo", "hello-backend") in kube.objects
