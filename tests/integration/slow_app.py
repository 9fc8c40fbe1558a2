"""The backend app plus ``GET /slow?seconds=S`` for the graceful-shutdown test (never shipped).

When ``SLOW_MARKER_DIR`` is set, a request touches ``<dir>/started`` as soon as it is being handled, so the
test knows the request is in flight without sleeping.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flask import Response, jsonify, request

from scaledapi_backend.app import create_app

app = create_app()


@app.get("/slow")
def slow() -> Response:
    seconds = min(float(request.args.get("seconds", "1")), 10.0)
    marker_dir = os.environ.get("SLOW_MARKER_DIR")
    if marker_dir:
        Path(marker_dir, "started").touch()
    time.sleep(seconds)  # the simulated slow work itself, not a wait
    return jsonify(slept=seconds, instance=app.config["INSTANCE"])
