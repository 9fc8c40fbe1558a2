"""All Kubernetes API I/O of the operator, as plain JSON dicts.

Requests go through apiserver.Transport (the standard library, kept-alive connections) and bodies stay
raw JSON, exactly as the API server sends them, so that desired-vs-actual comparisons see what the
server stored. 404 and 409 are handled here on purpose:

* get: 404 -> None
* create: 409 (already exists) -> None; the caller re-gets and compares
* patch: 404 -> None (deleted meanwhile; the caller creates it on the next pass)
* delete: 404 -> fine

Every request has a deadline (REQUEST_TIMEOUT_SECONDS for each blocking step): a request the API server
never answers fails with a timeout (an OSError) instead of holding a reconcile (and its lock) for ever.
Any other error answer is raised as ApiError; `error_message` gives the API server's own words for it
(the `message` of its Status object), for conditions and logs.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from scaledapi_operator import API_VERSION, KIND, PLURAL
from scaledapi_operator.apiserver import Endpoint, Transport

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
COMPONENT = "scaledapi-operator"
HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409
# Deadline of one request (each attempt of the connection pool); no call of the operator blocks longer.
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Kind:
    api_version: str
    plural: str

    def collection(self, namespace: str | None) -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if namespace is None:
            return f"{root}/{self.plural}"
        return f"{root}/namespaces/{quote(namespace, safe='')}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{quote(name, safe='')}"


KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("v1", "configmaps"),
    "Deployment": Kind("apps/v1", "deployments"),
    "EndpointSlice": Kind("discovery.k8s.io/v1", "endpointslices"),
    "Event": Kind("v1", "events"),
    "Lease": Kind("coordination.k8s.io/v1", "leases"),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies"),
    "Pod": Kind("v1", "pods"),
    "PodDisruptionBudget": Kind("policy/v1", "poddisruptionbudgets"),
    "Role": Kind("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Service": Kind("v1", "services"),
    "ServiceAccount": Kind("v1", "serviceaccounts"),
    KIND: Kind(API_VERSION, PLURAL),
}


class ApiError(Exception):
    """The API server answered with an error status; `body` is its Status object as text, if any."""

    def __init__(self, status: int, reason: str = "", body: str | None = None) -> None:
        super().__init__(f"({status}) {reason}".strip())
        self.status = status
        self.reason = reason
        self.body = body


def error_message(error: ApiError) -> str:
    """The API server's explanation of a refusal: `CODE Reason: message` from its Status object."""
    text = error.body
    message = ""
    reason = ""
    try:
        status = json.loads(text) if text else {}
    except ValueError:
        status = {}
    if isinstance(status, dict):
        message = str(status.get("message") or "")
        reason = str(status.get("reason") or "")
    head = f"{error.status} {reason or error.reason or 'Error'}".strip()
    return f"{head}: {message}" if message else head


class Kube:
    """A thin JSON client; one instance per operator process (thread-safe, as its Transport)."""

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport = transport or Transport(Endpoint.from_environment(), REQUEST_TIMEOUT_SECONDS)

    @property
    def timeout(self) -> float:
        return self.transport.timeout

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str | None = None,
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        if query:
            path = f"{path}?{urlencode(query)}"
        payload = None if body is None else json.dumps(body).encode("utf-8")
        if body is not None:
            content_type = content_type or "application/json"
        answer = self.transport.request(method, path, payload, content_type)
        data = answer.body
        if not 200 <= answer.status <= 299:
            raise ApiError(answer.status, answer.reason, data.decode("utf-8", "replace") if data else None)
        if not data:
            return {}
        result: dict[str, Any] = json.loads(data)
        return result

    # Objects of any kind in KINDS.

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", KINDS[kind].item(namespace, name))
        except ApiError as error:
            if error.status == HTTP_NOT_FOUND:
                return None
            raise

    def create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists (409): someone else was first, the caller re-gets."""
        meta = body["metadata"]
        try:
            return self._request("POST", KINDS[body["kind"]].collection(meta["namespace"]), body=body)
        except ApiError as error:
            if error.status == HTTP_CONFLICT:
                return None
            raise

    def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], content_type: str = MERGE_PATCH
    ) -> dict[str, Any] | None:
        """Patch; None when the object is gone (404)."""
        try:
            return self._request(
                "PATCH", KINDS[kind].item(namespace, name), body=patch, content_type=content_type
            )
        except ApiError as error:
            if error.status == HTTP_NOT_FOUND:
                return None
            raise

    def patch_at_version(
        self, kind: str, namespace: str, name: str, resource_version: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch only while the object is still at `resource_version` (optimistic concurrency);
        None when someone else wrote it meanwhile (409) or it is gone (404)."""
        body = {**patch, "metadata": {**patch.get("metadata", {}), "resourceVersion": resource_version}}
        try:
            return self.patch(kind, namespace, name, body)
        except ApiError as error:
            if error.status == HTTP_CONFLICT:
                return None
            raise

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete (background propagation); gone already (404) is fine. With uid: only that object."""
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        try:
            self._request("DELETE", KINDS[kind].item(namespace, name), body=options)
        except ApiError as error:
            if error.status != HTTP_NOT_FOUND:
                raise

    def list_objects(
        self, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else None
        items: list[dict[str, Any]] = self._request(
            "GET", KINDS[kind].collection(namespace), query=query
        ).get("items", [])
        return items

    # The ScaledApi itself.

    def get_scaledapi(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(KIND, namespace, name)

    def patch_scaledapi_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource (the spec cannot be touched through it)."""
        try:
            return self._request(
                "PATCH",
                KINDS[KIND].item(namespace, name) + "/status",
                body={"status": status},
                content_type=MERGE_PATCH,
            )
        except ApiError as error:
            if error.status == HTTP_NOT_FOUND:
                return None
            raise

    def post_event(self, involved: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """A core/v1 Event about `involved`, for posting outside of a kopf handler's context."""
        meta = involved["metadata"]
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", API_VERSION),
                "kind": involved.get("kind", KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT, "host": os.environ.get("POD_NAME") or socket.gethostname()},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._request("POST", KINDS["Event"].collection(meta["namespace"]), body=event)
        except ApiError as error:  # an event is best effort; never fail a reconcile for it
            logger.warning("could not post event %s on %s: %s", reason, meta["name"], error.status)
