"""The report each nginx pod merge-patches into ConfigMap ``NAME-proxy-status`` (no I/O)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from scaledapi_proxy.applier import shorten


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_value(config_hash: str, state: str, message: str, when: dt.datetime) -> str:
    return json.dumps(
        {"hash": config_hash, "state": state, "message": shorten(message), "time": rfc3339(when)},
        sort_keys=True,
    )


def report_patch(
    pod_name: str, config_hash: str, state: str, message: str, when: dt.datetime
) -> dict[str, Any]:
    """JSON merge patch body: only key ``pod_name`` of ``data`` changes, other pods' keys stay."""
    return {"data": {pod_name: report_value(config_hash, state, message, when)}}
