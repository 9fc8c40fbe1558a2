"""Leader election over a coordination.k8s.io Lease: of the operator's replicas, one reconciles.

Every replica runs kopf (its watches, its handlers) so that a standby knows every ScaledApi and is warm;
only the holder of Lease `scaledapi-operator` in the operator's namespace reconciles. The rules are
those of client-go's leader election, in one small object that the tests drive with a fake clock:

* The holder renews every RETRY_SECONDS. One that could not renew for RENEW_DEADLINE_SECONDS stops
  reconciling at once, before anyone may take over (LEASE_SECONDS), so that two never write at once.
* A standby takes the Lease when its record has not changed for LEASE_SECONDS on the standby's own
  clock (never by comparing its clock with the holder's), or when it has no holder. Writes carry the
  read resourceVersion: of two standbys racing, one wins and the other sees 409.
* A holder that stops gracefully gives the Lease up (no holder), so that a standby takes over at its
  next try, within RETRY_SECONDS, instead of waiting out the Lease. A replica that is stopping (its
  preStop hook wrote STOPPING_FILE) never takes the Lease: in a rolling update, the Lease goes to a
  new pod, not to an old one on its way out.

The data plane never waits for any of this: nginx keeps serving its last applied config while no
operator reconciles; only changes (a new copy, a removed one, an edit) wait for the next leader.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

from scaledapi_operator.kube import ApiError, Kube

logger = logging.getLogger(__name__)

LEASE_NAME = "scaledapi-operator"
LEASE_SECONDS = 10
RENEW_DEADLINE_SECONDS = 7.0
# How often every replica looks at the Lease (the holder renews it, standbys watch it age).
RETRY_SECONDS = 2.0
# Written by the operator pod's preStop hook (manifests/operator.yaml), before kopf gets SIGTERM.
STOPPING_FILE = Path("/tmp/scaledapi-operator-stopping")  # noqa: S108 - the pod's own emptyDir


def _micro_time(now: datetime.datetime) -> str:
    """A Lease's MicroTime: RFC 3339 with microseconds, in UTC."""
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wall_clock() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Record:
    """What a replica reads of the Lease: who holds it, and the version that any write must match."""

    holder: str | None
    resource_version: str
    transitions: int
    lease_seconds: int

    @staticmethod
    def of(lease: Mapping[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return Record(
            holder=spec.get("holderIdentity") or None,
            resource_version=str(lease["metadata"]["resourceVersion"]),
            transitions=int(spec.get("leaseTransitions") or 0),
            lease_seconds=int(spec.get("leaseDurationSeconds") or LEASE_SECONDS),
        )


class Leadership:
    """One replica's view of the Lease; `step()` is one look (and write), `leading` the answer."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        identity: str,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = _wall_clock,
        stopping: Callable[[], bool] = STOPPING_FILE.exists,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._stopping = stopping
        self.leading = False
        self._renewed_at = 0.0  # when this replica last wrote the Lease as its holder (monotonic)
        self._seen: Record | None = None
        self._seen_since = 0.0  # when the record last changed, on this replica's clock

    def step(self) -> bool:
        """Look at the Lease once: renew, take over or wait. True when this replica just became leader."""
        was_leading = self.leading
        if self._stopping():
            self.release()
            return False
        try:
            self._try()
        except (ApiError, HTTPException, OSError) as error:
            # Leadership is not given up on one failed request: the renew deadline decides.
            logger.warning("lease %s/%s: %s", self.namespace, LEASE_NAME, error)
        if self.leading and self._monotonic() - self._renewed_at > RENEW_DEADLINE_SECONDS:
            logger.warning("lease %s/%s not renewed in time: no longer leading", self.namespace, LEASE_NAME)
            self.leading = False
        if self.leading != was_leading:
            logger.info("%s is %s", self.identity, "the leader" if self.leading else "a standby")
        return self.leading and not was_leading

    def release(self) -> None:
        """Give the Lease up, so that a standby takes over at once (at a graceful stop)."""
        if not self.leading or self._seen is None:
            return
        self.leading = False
        try:
            self.kube.patch_at_version(
                "Lease",
                self.namespace,
                LEASE_NAME,
                self._seen.resource_version,
                {"spec": {"holderIdentity": None}},
            )
        except (ApiError, HTTPException, OSError) as error:
            logger.warning("lease %s/%s not released: %s", self.namespace, LEASE_NAME, error)

    def _try(self) -> None:
        lease = self.kube.get("Lease", self.namespace, LEASE_NAME)
        now = self._monotonic()
        if lease is None:
            self._create(now)
            return
        record = Record.of(lease)
        if record != self._seen:
            self._seen, self._seen_since = record, now
        if record.holder == self.identity:
            self._write(record, now, acquired=False)
        elif record.holder is None or now - self._seen_since > record.lease_seconds:
            self._write(record, now, acquired=True)
        else:
            self.leading = False

    def _spec(self, acquired: bool, transitions: int) -> dict[str, Any]:
        stamp = _micro_time(self._wall_clock())
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": stamp,
        }
        if acquired:
            spec.update(acquireTime=stamp, leaseTransitions=transitions)
        return spec

    def _create(self, now: float) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
            "spec": self._spec(acquired=True, transitions=0),
        }
        created = self.kube.create(body)
        if created is None:  # another replica was first (409): look again next time
            self.leading = False
            return
        self._won(Record.of(created), now)

    def _write(self, record: Record, now: float, acquired: bool) -> None:
        transitions = record.transitions + 1 if acquired else record.transitions
        written = self.kube.patch_at_version(
            "Lease",
            self.namespace,
            LEASE_NAME,
            record.resource_version,
            {"spec": self._spec(acquired, transitions)},
        )
        if written is None:  # someone else wrote it first (409) or it was deleted: look again
            if acquired:
                self.leading = False
            return
        if acquired:
            logger.info(
                "%s took lease %s/%s from %s", self.identity, self.namespace, LEASE_NAME, record.holder
            )
        self._won(Record.of(written), now)

    def _won(self, record: Record, now: float) -> None:
        self._seen, self._seen_since = record, now
        self._renewed_at = now
        self.leading = True
