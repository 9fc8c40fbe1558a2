"""The operator's settings from its environment (its Deployment's env; the Helm chart's values)."""

from __future__ import annotations

import os
import re

MONITORING_NAMESPACE_ENV = "SCALEDAPI_MONITORING_NAMESPACE"
DEFAULT_MONITORING_NAMESPACE = "monitoring"
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def monitoring_namespace() -> str | None:
    """The namespace whose pods may scrape the nginx pods' metrics port, besides the ScaledApi's own
    namespace (builders/network.py): SCALEDAPI_MONITORING_NAMESPACE, `monitoring` when unset; set and
    empty, None (only the own namespace). Anything but a namespace name is an error naming the variable,
    raised at startup (handlers.start) rather than written into a NetworkPolicy the API server refuses."""
    text = os.environ.get(MONITORING_NAMESPACE_ENV)
    if text is None:
        return DEFAULT_MONITORING_NAMESPACE
    text = text.strip()
    if not text:
        return None
    if len(text) > 63 or not _NAMESPACE.fullmatch(text):
        raise ValueError(
            f"{MONITORING_NAMESPACE_ENV} must be a namespace name (DNS-1123 label) or empty, got {text!r}"
        )
    return text
