"""The nginx renderer: pure text, deterministic, validated input."""

from __future__ import annotations

import hashlib
import re

import pytest

from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, config_hash, render_nginx_conf
from scaledapi_proxy.applier import config_hash as proxy_config_hash

S = NginxSettings()
EPS = [Endpoint("10.244.0.12", 5252), Endpoint("10.244.0.3", 5252), Endpoint("10.244.1.7", 5252)]


def servers(text: str) -> list[str]:
    return re.findall(r"^\s+server (\S+) ", text, flags=re.MULTILINE)


def test_deterministic_and_independent_of_input_order() -> None:
    assert render_nginx_conf(S, EPS) == render_nginx_conf(S, list(reversed(EPS)))
    assert render_nginx_conf(S, EPS) == render_nginx_conf(S, [*EPS, EPS[0]])  # duplicates collapse


def test_every_endpoint_once_sorted_numerically() -> None:
    text = render_nginx_conf(S, EPS)
    assert servers(text) == ["10.244.0.3:5252", "10.244.0.12:5252", "10.244.1.7:5252"]


def test_upstream_has_shared_zone_and_is_used() -> None:
    text = render_nginx_conf(S, EPS)
    assert re.search(r"upstream scaledapi_backend \{\n\s+zone scaledapi_backend \d+k;", text)
    assert "proxy_pass http://scaledapi_backend;" in text


def test_retries_idempotent_only_with_settings() -> None:
    text = render_nginx_conf(NginxSettings(next_upstream_tries=5, upstream_timeout_seconds=42), EPS)
    assert "proxy_next_upstream error timeout http_502 http_503;" in text
    assert "non_idempotent" not in re.sub(r"#.*", "", text)
    assert "proxy_next_upstream_tries 5;" in text
    assert "proxy_connect_timeout 1s;" in text
    assert "proxy_read_timeout 42s;" in text


def test_self_contained_and_non_root() -> None:
    text = render_nginx_conf(NginxSettings(runtime_dir="/run/x", listen_port=9090, worker_processes=3), EPS)
    assert "include" not in text
    assert not re.search(r"^\s*user\s", text, flags=re.MULTILINE)
    assert "daemon" not in text
    assert "pid /run/x/nginx.pid;" in text
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{temp}_temp_path /run/x/{temp}_temp;" in text
    assert "error_log stderr" in text
    assert "access_log /dev/stdout scaledapi buffer=32k flush=1s;" in text  # Buffered, the default
    assert "$upstream_addr" in text
    assert "listen 9090;" in text
    assert "worker_processes 3;" in text
    assert "location = /healthz" in text


def test_zero_endpoints_answer_503_json_without_upstream() -> None:
    text = render_nginx_conf(S, [])
    assert not re.search(r"^\s*upstream ", text, flags=re.MULTILINE)
    assert "proxy_pass" not in text
    assert "return 503 '{" in text
    assert "default_type application/json;" in text


def test_ipv6_is_bracketed_and_normalised() -> None:
    text = render_nginx_conf(S, [Endpoint("fd00:0::1", 8000)])
    assert servers(text) == ["[fd00::1]:8000"]


@pytest.mark.parametrize(
    "endpoint",
    [
        Endpoint("10.0.0.256", 5252),
        Endpoint("10.0.0.1; include /etc/passwd", 5252),
        Endpoint("example.com", 5252),
        Endpoint("fe80::1%eth0", 5252),  # ipaddress parses a zone id and would print it
        Endpoint("", 5252),
        Endpoint("10.0.0.1", 0),
        Endpoint("10.0.0.1", 65536),
        Endpoint("10.0.0.1", "5252"),  # type: ignore[arg-type]
        Endpoint("10.0.0.1", True),
    ],
)
def test_invalid_endpoint_rejected(endpoint: Endpoint) -> None:
    with pytest.raises(ValueError):
        render_nginx_conf(S, [endpoint])


@pytest.mark.parametrize(
    "settings",
    [
        NginxSettings(listen_port=0),
        NginxSettings(runtime_dir="tmp/nginx"),
        NginxSettings(runtime_dir="/run/a b"),
        NginxSettings(runtime_dir="/run/x;y"),
        NginxSettings(runtime_dir="/run/../etc"),
        NginxSettings(worker_processes=0),
        NginxSettings(next_upstream_tries=0),
        NginxSettings(upstream_timeout_seconds=0),
        NginxSettings(access_log="off"),
    ],
)
def test_invalid_settings_rejected(settings: NginxSettings) -> None:
    with pytest.raises(ValueError):
        render_nginx_conf(settings, EPS)


def test_hash_is_first_16_hex_of_sha256_and_matches_the_proxy() -> None:
    text = render_nginx_conf(S, EPS)
    assert config_hash(text) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", config_hash(text))
    assert proxy_config_hash(text) == config_hash(text)
    assert config_hash(render_nginx_conf(S, EPS[:2])) != config_hash(text)
