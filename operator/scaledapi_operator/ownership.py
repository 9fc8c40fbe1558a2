"""Whose object is it: the rules that keep the operator off anything that is not its own (no I/O).

A child name (NAME-backend, NAME-proxy, ...) may already be taken by a user's object. Such an object is
never modified, adopted or deleted unless the user opts in with ADOPT_ANNOTATION on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scaledapi_operator import builders

# An object with one of our fixed names but without our controller reference is only taken over when it
# carries this annotation with the value "true" (the user's explicit opt-in); see DEVELOPERS.md.
ADOPT_ANNOTATION = "scaledapi.dev/adopt"
ADOPT_VALUE = "true"


def _controller(actual: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (actual.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            return ref
    return None


def ownership_conflict(actual: Mapping[str, Any], owner: builders.Owner) -> str | None:
    """Why the operator must not touch `actual` (the NameConflict message), or None when it may.

    It may when this ScaledApi is the controller (a controller owner reference with its uid), or when the
    object has no controller at all and carries ADOPT_ANNOTATION: "true". Anything else that happens to
    bear one of our fixed names is someone else's: never modified, adopted or deleted.
    """
    meta = actual.get("metadata") or {}
    kind, name = actual.get("kind") or "?", meta.get("name") or "?"
    what = f"{kind}/{name}"
    controller = _controller(actual)
    if controller is not None:
        if controller.get("uid") == owner.uid:
            return None
        other = f"{controller.get('kind')}/{controller.get('name')} (uid {controller.get('uid')})"
        return (
            f"{what} already exists and is controlled by {other}, not by this ScaledApi; the operator"
            f" leaves it alone. To resolve: delete or rename {what}, or give this ScaledApi another name"
        )
    if (meta.get("annotations") or {}).get(ADOPT_ANNOTATION) == ADOPT_VALUE:
        return None
    return (
        f"{what} already exists and is not owned by this ScaledApi; the operator leaves it alone. To"
        f" resolve: delete or rename {what}, or let this ScaledApi adopt it (and delete it with the"
        f" ScaledApi): kubectl annotate {kind.lower()} {name} -n {owner.namespace}"
        f" {ADOPT_ANNOTATION}={ADOPT_VALUE}"
    )


def is_ours(actual: Mapping[str, Any], owner: builders.Owner) -> bool:
    controller = _controller(actual)
    return controller is not None and controller.get("uid") == owner.uid


def with_other_owners(
    desired: dict[str, Any], actual: Mapping[str, Any], owner: builders.Owner
) -> dict[str, Any]:
    """`desired` whose owner references also keep the non-controller references someone else put on
    `actual` (as Kubernetes controllers do: set their own controller reference, keep the rest)."""
    others = [
        ref
        for ref in (actual.get("metadata") or {}).get("ownerReferences") or []
        if isinstance(ref, Mapping) and not ref.get("controller") and ref.get("uid") != owner.uid
    ]
    if not others:
        return desired
    meta = {**desired["metadata"], "ownerReferences": [*desired["metadata"]["ownerReferences"], *others]}
    return {**desired, "metadata": meta}
