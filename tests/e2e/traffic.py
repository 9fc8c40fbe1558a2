"""HTTP through the host port of kind-config.yaml, as `curl localhost:8080/api/hello` does.

Every request opens a new connection (``Connection: close``), like a shell loop of curl: a kept-alive
connection would pin a client to an nginx worker that a reload is retiring and blur what is measured.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests

from tests.e2e import ports

# 127.0.0.1, not localhost: kind-config.yaml binds the host ports to 127.0.0.1 only, and a resolver that
# tries ::1 first would add a failed connect to every request.
HOST = "127.0.0.1"
DEFAULT_PORT = ports.MAIN_HOST_PORT  # 8080 unless another xdist worker runs this
REQUEST_TIMEOUT = 5.0


def url(port: int = DEFAULT_PORT, path: str = "/api/hello") -> str:
    return f"http://{HOST}:{port}{path}"


@dataclass(frozen=True)
class Answer:
    sent: float  # time.monotonic() before the request
    received: float  # time.monotonic() after the answer or the error
    status: int | None  # None when no HTTP answer came
    instance: str | None  # the backend pod that answered (None unless a 200 with JSON)
    error: str | None  # why the request counts as failed, None for a 200 with an instance

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Api:
    """Where an API is asked and which JSON key of its answer names the copy that answered: the bundled
    backend's /api/hello says ``instance``; a user's own API may say it otherwise (``hostname``)."""

    path: str = "/api/hello"
    instance_key: str = "instance"


BUNDLED = Api()


def hello(port: int = DEFAULT_PORT, timeout: float = REQUEST_TIMEOUT, api: Api = BUNDLED) -> Answer:
    """One GET of ``api.path``; a failure is a non-200, a body without the instance key, or an exception."""
    sent = time.monotonic()
    try:
        response = requests.get(url(port, api.path), timeout=timeout, headers={"Connection": "close"})
    except requests.RequestException as exc:
        return Answer(sent, time.monotonic(), None, None, f"{type(exc).__name__}: {exc}")
    received = time.monotonic()
    if response.status_code != 200:
        return Answer(sent, received, response.status_code, None, f"HTTP {response.status_code}")
    try:
        body: Any = response.json()
    except ValueError:
        return Answer(sent, received, 200, None, f"not JSON: {response.text[:200]!r}")
    instance = body.get(api.instance_key) if isinstance(body, dict) else None
    if not isinstance(instance, str) or not instance:
        return Answer(sent, received, 200, None, f"no {api.instance_key} in {body!r}")
    return Answer(sent, received, 200, instance, None)


def instances(port: int, count: int, api: Api = BUNDLED) -> list[str]:
    """``count`` sequential requests; the answering pods in order. Raises AssertionError on a failure."""
    result = []
    for _ in range(count):
        answer = hello(port, api=api)
        if answer.instance is None:
            raise AssertionError(f"request to {url(port)} failed: {answer.error}")
        result.append(answer.instance)
    return result


def proxy_answers(port: int = DEFAULT_PORT, times: int = 3) -> bool:
    """True when nginx's own /healthz answers 200 ``times`` in a row through ``port``.

    It asks nginx, not a backend, so it does not move the round robin. Ready pods and an Applied config
    are not yet "answering on the node port": until kube-proxy on the node has the new Service's rule,
    the host port's proxy accepts and then resets the connection.
    """
    for _ in range(times):
        try:
            response = requests.get(
                url(port, "/healthz"), timeout=REQUEST_TIMEOUT, headers={"Connection": "close"}
            )
        except requests.RequestException:
            return False
        if response.status_code != 200:
            return False
    return True


def serves_exactly(port: int, expected: Iterable[str], rounds: int = 2, api: Api = BUNDLED) -> bool:
    """True when ``rounds`` round-robin cycles (+1 request) are answered by exactly the expected pods."""
    wanted = set(expected)
    if not wanted:
        return False
    seen = instances(port, rounds * len(wanted) + 1, api)
    return set(seen) == wanted


class Load:
    """Background clients sending GET requests to ``api`` at a paced rate until stopped or a bound is hit.

    ``workers`` threads each send sequentially at ``rate / workers`` requests per second. Bounded by
    ``max_seconds`` and ``max_requests`` so that a forgotten stop cannot run forever.
    """

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        rate: float = 100.0,
        workers: int = 8,
        timeout: float = REQUEST_TIMEOUT,
        max_seconds: float = 600.0,
        max_requests: int = 100_000,
        api: Api = BUNDLED,
    ) -> None:
        self.port = port
        self.api = api
        self.rate = rate
        self.workers = workers
        self.timeout = timeout
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.stopped = 0.0

    def __enter__(self) -> Load:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.monotonic()
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        if not self.stopped:
            self.stopped = time.monotonic()

    def _run(self, index: int) -> None:
        interval = self.workers / self.rate
        next_at = time.monotonic() + index * interval / self.workers
        deadline = self.started + self.max_seconds
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline or len(self.answers) >= self.max_requests:
                break
            if next_at > now:
                # Pacing between requests, interruptible by stop(); not a wait for a condition.
                self._stop.wait(next_at - now)
                continue
            # Catch up after a slow answer, but by at most a second's worth of requests.
            next_at = max(next_at + interval, now - 1.0)
            answer = hello(self.port, self.timeout, self.api)
            with self._lock:
                self.answers.append(answer)
        with self._lock:
            if not self.stopped:
                self.stopped = time.monotonic()

    # --- what the answers say --------------------------------------------------------------------------

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    @property
    def sent(self) -> int:
        return len(self.snapshot())

    def failures(self) -> list[Answer]:
        return [a for a in self.snapshot() if not a.ok]

    def rate_achieved(self) -> float:
        answers = self.snapshot()
        end = self.stopped or time.monotonic()
        duration = end - self.started
        return len(answers) / duration if duration > 0 else 0.0

    def first_answers(self) -> dict[str, float]:
        """Pod -> time of its first answer (received)."""
        first: dict[str, float] = {}
        for a in sorted(self.snapshot(), key=lambda a: a.received):
            if a.instance is not None and a.instance not in first:
                first[a.instance] = a.received
        return first

    def served_since(self, since: float) -> Counter[str]:
        """Answers per pod among the requests sent at or after ``since``."""
        return Counter(a.instance for a in self.snapshot() if a.sent >= since and a.instance is not None)

    def last(self, count: int) -> list[Answer]:
        answers = sorted(self.snapshot(), key=lambda a: a.sent)
        return answers[-count:]

    def summary(self) -> dict[str, Any]:
        answers = self.snapshot()
        return {
            "sent": len(answers),
            "failed": sum(1 for a in answers if not a.ok),
            "seconds": round((self.stopped or time.monotonic()) - self.started, 2),
            "rate_per_second": round(self.rate_achieved(), 1),
            "statuses": dict(Counter(str(a.status) for a in answers)),
            "per_pod": dict(Counter(a.instance for a in answers if a.instance)),
        }

    def describe_failures(self, limit: int = 20) -> str:
        lines = [
            f"t+{a.sent - self.started:.3f}s {a.error} (after {a.received - a.sent:.3f}s)"
            for a in self.failures()[:limit]
        ]
        return "\n".join(lines)
