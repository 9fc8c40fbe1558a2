"""gunicorn finishes in-flight requests on SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.integration.itest_support import Backend, wait_for


def test_sigterm_lets_the_in_flight_request_finish(
    start_backends: Callable[..., list[Backend]], tmp_path: Path
) -> None:
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    (backend,) = start_backends(
        "slow-0", app="slow_app:app", env={"GRACEFUL_TIMEOUT": "10", "SLOW_MARKER_DIR": str(marker_dir)}
    )
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            resp = requests.get(f"{backend.url}/slow?seconds=1.5", timeout=15)
            outcome["status"] = resp.status_code
            outcome["body"] = resp.json()
        except requests.RequestException as exc:
            outcome["error"] = repr(exc)

    client = threading.Thread(target=call)
    client.start()
    wait_for((marker_dir / "started").exists, 10, "the slow request to reach the backend")

    sent = time.monotonic()
    backend.proc.send_signal(signal.SIGTERM)
    client.join(15)
    rc = backend.proc.wait(15)

    assert outcome.get("status") == 200, outcome
    assert outcome["body"] == {"slept": 1.5, "instance": "slow-0"}
    assert rc == 0
    print(f"gunicorn exited {time.monotonic() - sent:.2f}s after SIGTERM, the request completed")
    log = backend.log_path.read_text()
    assert "Handling signal: term" in log
    assert '"GET /slow?seconds=1.5 HTTP/1.1" 200' in log
    assert "instance=slow-0" in log
