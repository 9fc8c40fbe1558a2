"""The node ports and host ports a scenario may use, so that scenarios can run side by side.

`make e2e` runs the independent scenarios on several pytest-xdist workers at once (hack/e2e.sh). Each
worker owns three node ports of its own, and kind-config*.yaml maps each node port to a host port on
127.0.0.1: worker gwN owns node ports 30080+3N .. 30082+3N, reached on host ports 8080+3N .. 8082+3N.
A run without xdist (the serial scenarios, `pytest tests/e2e`) is worker 0: 30080-30082, 8080-8082, the
ports of `make up`'s sample.
"""

from __future__ import annotations

import os

FIRST_NODE_PORT = 30080
FIRST_HOST_PORT = 8080
PORTS_PER_WORKER = 3
MAX_WORKERS = 3  # kind-config*.yaml map 3 x 3 node ports; more workers need more mappings there


def worker_index(worker: str | None = None) -> int:
    """0 for gw0 or no xdist, N for gwN; a worker beyond the mapped ports fails, saying so."""
    name = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(name.removeprefix("gw"))
    if not 0 <= index < MAX_WORKERS:
        raise AssertionError(
            f"xdist worker {name}: kind-config*.yaml map host ports for {MAX_WORKERS} workers only "
            f"(E2E_WORKERS <= {MAX_WORKERS})"
        )
    return index


# Every mapped node port -> its host port.
HOST_PORTS = {FIRST_NODE_PORT + i: FIRST_HOST_PORT + i for i in range(PORTS_PER_WORKER * MAX_WORKERS)}
_BASE = FIRST_NODE_PORT + PORTS_PER_WORKER * worker_index()
# This worker's node ports: the main one (traffic's default) and two spares.
NODE_PORTS = (_BASE, _BASE + 1, _BASE + 2)
MAIN, SPARE, SECOND_SPARE = NODE_PORTS
MAIN_HOST_PORT = HOST_PORTS[MAIN]
