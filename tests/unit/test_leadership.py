"""Leader election over a Lease: one leader, takeover only after the Lease aged on the standby's own
clock, a holder that cannot renew stops leading before anyone may take over, a graceful stop hands over.

The API server is a test double here (an in-memory Lease with resourceVersions and 409s, as the real
one answers a stale write); the e2e suite runs two real operator replicas against a real one.
"""

from __future__ import annotations

import copy
import datetime
from typing import Any, cast

import pytest

from scaledapi_operator.kube import Kube
from scaledapi_operator.leadership import LEASE_NAME, LEASE_SECONDS, RENEW_DEADLINE_SECONDS, Leadership
from tests.unit.test_retry import Clock

NAMESPACE = "scaledapi-system"


class LeaseServer:
    """One namespace's Leases, written only at the version read (else 409 -> None, as kube.Kube does)."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise TimeoutError("/apis/coordination.k8s.io: timed out")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        assert (kind, namespace) == ("Lease", NAMESPACE)
        found = self.leases.get(name)
        return copy.deepcopy(found) if found else None

    def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self._check()
        name = body["metadata"]["name"]
        if name in self.leases:
            return None
        self.version += 1
        self.leases[name] = {
            **copy.deepcopy(body),
            "metadata": {"name": name, "resourceVersion": str(self.version)},
        }
        return copy.deepcopy(self.leases[name])

    def patch_at_version(
        self, kind: str, namespace: str, name: str, resource_version: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        self._check()
        lease = self.leases.get(name)
        if lease is None or lease["metadata"]["resourceVersion"] != resource_version:
            return None
        for key, value in patch["spec"].items():
            if value is None:
                lease["spec"].pop(key, None)
            else:
                lease["spec"][key] = value
        self.version += 1
        lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(lease)

    def holder(self) -> str | None:
        holder: str | None = self.leases[LEASE_NAME]["spec"].get("holderIdentity")
        return holder


@pytest.fixture
def server() -> LeaseServer:
    return LeaseServer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def replica(server: LeaseServer, clock: Clock, identity: str) -> Leadership:
    wall = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)
    return Leadership(cast(Kube, server), NAMESPACE, identity, monotonic=clock, wall_clock=lambda: wall)


def test_the_first_replica_creates_the_lease_and_leads_the_other_waits(
    server: LeaseServer, clock: Clock
) -> None:
    a, b = replica(server, clock, "a"), replica(server, clock, "b")
    assert a.step() is True  # became leader just now
    assert b.step() is False
    assert (a.leading, b.leading) == (True, False)
    spec = server.leases[LEASE_NAME]["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == LEASE_SECONDS
    assert spec["renewTime"] == "2026-12-02T00:00:00.000000Z"
    for _ in range(30):  # a renewing leader keeps it for as long as it runs
        clock.now += 2
        a.step()
        b.step()
    assert (a.leading, b.leading) == (True, False)
    assert server.holder() == "a"


def test_a_standby_takes_over_only_after_the_lease_aged_on_its_own_clock(
    server: LeaseServer, clock: Clock
) -> None:
    a, b = replica(server, clock, "a"), replica(server, clock, "b")
    a.step()
    b.step()
    # a is gone without a word (its node lost): b watches the unchanged record age.
    took_over_at = None
    for tick in range(1, 20):
        clock.now += 1
        if b.step():
            took_over_at = tick
            break
    assert took_over_at == LEASE_SECONDS + 1  # the first look after the record is LEASE_SECONDS old
    assert server.holder() == "b"
    assert server.leases[LEASE_NAME]["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_stops_leading_before_anyone_may_take_over(
    server: LeaseServer, clock: Clock
) -> None:
    a = replica(server, clock, "a")
    a.step()
    server.down = True  # the API server is out of reach for the leader
    clock.now += RENEW_DEADLINE_SECONDS - 1
    a.step()
    assert a.leading  # one failed renewal is not the end
    clock.now += 2
    a.step()
    assert not a.leading
    assert RENEW_DEADLINE_SECONDS < LEASE_SECONDS  # so that no standby can take over while a still writes


def test_of_two_standbys_racing_for_an_expired_lease_one_wins(server: LeaseServer, clock: Clock) -> None:
    a, b, c = (replica(server, clock, name) for name in "abc")
    a.step()
    b.step()
    c.step()
    clock.now += LEASE_SECONDS + 1
    record = server.get("Lease", NAMESPACE, LEASE_NAME)
    assert record is not None
    # b and c both read the same record; b writes first, so c's write at that version is refused.
    b.step()
    c.step()
    assert (b.leading, c.leading) == (True, False)
    assert server.holder() == "b"


def test_a_graceful_stop_hands_over_at_the_standbys_next_look(server: LeaseServer, clock: Clock) -> None:
    a, b = replica(server, clock, "a"), replica(server, clock, "b")
    a.step()
    b.step()
    a.release()
    assert not a.leading
    assert server.holder() is None
    clock.now += 2
    assert b.step() is True
    assert server.holder() == "b"


def test_a_standby_never_writes_a_lease_that_is_renewed(server: LeaseServer, clock: Clock) -> None:
    a, b = replica(server, clock, "a"), replica(server, clock, "b")
    a.step()
    b.step()
    versions = set()
    for _ in range(20):
        clock.now += 2
        a.step()
        before = server.version
        b.step()
        assert server.version == before  # b only read
        versions.add(server.version)
    assert len(versions) == 20  # a renewed at every look


def test_a_stopping_replica_hands_over_and_never_takes_the_lease(server: LeaseServer, clock: Clock) -> None:
    """A rolling update: the old leader and an old standby are both on their way out."""
    stopping: set[str] = set()

    def make(who: str) -> Leadership:
        return Leadership(
            cast(Kube, server), NAMESPACE, who, monotonic=clock, stopping=lambda: who in stopping
        )

    a, b, c = make("a"), make("b"), make("c")
    a.step()
    b.step()
    stopping.update({"a", "b"})
    clock.now += 2
    a.step()  # its preStop hook ran: it gives the Lease up
    assert not a.leading and server.holder() is None
    b.step()  # stopping too: it does not take it
    assert server.holder() is None
    assert c.step() is True  # the new pod does
    assert server.holder() == "c"
