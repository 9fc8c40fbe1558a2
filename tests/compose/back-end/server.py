"""The user's API, not ours: the Python service of the compose course, as a user would bring it.

Standard library only. Every GET answers 200 with {"hostname", "path"}, so a caller can see which copy
served it; there is no health endpoint. It writes nothing to the filesystem (ScaledApi's root filesystem
is read-only) and on SIGTERM it stops accepting connections and lets the requests in flight finish.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

GRACE_SECONDS = 20.0


class InFlight:
    """The number of requests being answered; idle keep-alive connections do not count."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __enter__(self) -> None:
        with self.changed:
            self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        with self.changed:
            self.count -= 1
            self.changed.notify_all()

    def wait_until_idle(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.count == 0, timeout)


IN_FLIGHT = InFlight()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, which is why every answer has a Content-Length

    def do_GET(self) -> None:
        with IN_FLIGHT:
            body = json.dumps({"hostname": socket.gethostname(), "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: no line per request."""


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - in a container, for its peers

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever() to return: it cannot run on the thread that serves.
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()
    server.server_close()
    IN_FLIGHT.wait_until_idle(GRACE_SECONDS)


if __name__ == "__main__":
    main()
