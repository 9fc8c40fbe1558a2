"""Prometheus' text format, read back: the metrics of a pod scraped through the API server's proxy."""

from __future__ import annotations

import re

from tests.e2e import kube

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Samples:
    """{(name, labels): value} of every sample line; raises on a line that is not one."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = _SAMPLE.match(line)
        if found is None:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        labels = frozenset(_LABEL.findall(found.group(2) or ""))
        samples[(found.group(1), labels)] = float(found.group(3))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One series' value; 0 when it is absent (a counter nothing incremented yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def scrape_pod(ns: str, pod: str, port: int, path: str = "/metrics") -> Samples:
    """GET the pod's metrics through the API server's pod proxy (no port-forward, no host port)."""
    result = kube.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}", timeout=30
    )
    return parse(result.stdout)
