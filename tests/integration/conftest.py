"""Fixtures with real processes: gunicorn backends and nginx on loopback, no cluster.

A missing nginx or gunicorn fails the test with what to install; nothing is skipped. Every process started
here is terminated and waited for at teardown.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from scaledapi_operator.nginx_conf import Endpoint, NginxSettings, render_nginx_conf
from scaledapi_proxy.applier import NginxApplier, nginx_run_command
from scaledapi_proxy.zero import ScaleToZero
from tests.integration.fake_kube_api import FakeKubeApi
from tests.integration.itest_support import (
    PROXY_POD,
    Backend,
    Nginx,
    ProxyRun,
    ScaleToZeroThreads,
    free_port,
    http_ok,
    let_workers_reach,
    stop_process,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
START_DEADLINE_S = 20.0


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        pytest.fail("nginx is not installed: install it (Debian/Ubuntu: apt-get install -y nginx)")
    return found


@pytest.fixture(scope="session")
def gunicorn_ok() -> None:
    if importlib.util.find_spec("gunicorn") is None or importlib.util.find_spec("flask") is None:
        pytest.fail(f"gunicorn/flask missing in {sys.executable}: pip install -e '.[test]'")


@pytest.fixture
def start_backends(gunicorn_ok: None, tmp_path: Path) -> Iterator[Callable[..., list[Backend]]]:
    """``start_backends("a", "b", app=..., env=...)``: real gunicorn processes, each ready on /healthz."""
    started: list[Backend] = []

    def start(
        *names: str, app: str = "scaledapi_backend.app:app", env: dict[str, str] | None = None
    ) -> list[Backend]:
        batch = []
        for name in names:
            port = free_port()
            log_path = tmp_path / f"gunicorn-{name}.log"
            proc_env = {
                **os.environ,
                "PORT": str(port),
                "POD_NAME": name,
                "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(HERE)]),
                **(env or {}),
            }
            cmd = [sys.executable, "-m", "gunicorn", "-c", "python:scaledapi_backend.gunicorn_conf", app]
            with log_path.open("wb") as log:
                proc = subprocess.Popen(cmd, env=proc_env, stdout=log, stderr=subprocess.STDOUT)
            backend = Backend(name, port, proc, log_path)
            started.append(backend)
            batch.append(backend)
        for b in batch:
            wait_for(
                lambda b=b: b.proc.poll() is not None or http_ok(f"{b.url}/healthz"),  # type: ignore[misc]
                START_DEADLINE_S,
                f"gunicorn {b.name} on port {b.port}",
            )
            if b.proc.poll() is not None:
                pytest.fail(f"gunicorn {b.name} exited with {b.proc.returncode}:\n{b.log_path.read_text()}")
        return batch

    yield start
    for b in started:
        stop_process(b.proc)


@pytest.fixture
def start_nginx(nginx_bin: str, tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """``start_nginx(endpoints, worker_processes=1, access_log="Buffered")``: the real nginx with the
    renderer's config."""
    started: list[Nginx] = []

    def start(
        endpoints: Sequence[Endpoint],
        worker_processes: int = 1,
        access_log: str = "Buffered",
        scale_to_zero: ScaleToZero | None = None,
        metrics: bool = False,
    ) -> Nginx:
        runtime = tmp_path / f"nginx-{len(started)}"
        runtime.mkdir()
        settings = NginxSettings(
            listen_port=free_port(),
            runtime_dir=str(runtime),
            worker_processes=worker_processes,
            access_log=access_log,
            scale_to_zero=scale_to_zero,
            metrics=metrics,
        )
        conf_path = runtime / "nginx.conf"
        conf_path.write_text(render_nginx_conf(settings, endpoints))
        log_path, error_log = runtime / "access.log", runtime / "error.log"
        cmd = nginx_run_command(nginx_bin, str(conf_path))
        cmd[1:1] = ["-p", f"{runtime}/"]
        with log_path.open("wb") as out, error_log.open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        applier = NginxApplier(
            str(conf_path), nginx_bin=nginx_bin, master_pid=lambda: proc.pid if proc.poll() is None else None
        )
        nginx = Nginx(settings, conf_path, proc, log_path, error_log, applier)
        started.append(nginx)
        wait_for(
            lambda: proc.poll() is not None or http_ok(f"{nginx.url}/healthz"),
            START_DEADLINE_S,
            f"nginx on port {settings.listen_port}",
        )
        if proc.poll() is not None:
            pytest.fail(f"nginx exited with {proc.returncode}:\n{error_log.read_text()}")
        return nginx

    yield start
    for n in started:
        stop_process(n.proc, signal.SIGQUIT)


@pytest.fixture
def proxy(nginx_bin: str, tmp_path: Path) -> Iterator[Callable[..., ProxyRun]]:
    """``proxy()``: ``python3 -m scaledapi_proxy`` with real nginx and a fake API server (FakeKubeApi)."""
    runs: list[ProxyRun] = []
    api = FakeKubeApi("demo", "demo-proxy", "demo-proxy-status")
    api.start()

    def start(metrics_port: int | None = None) -> ProxyRun:
        """The proxy process; with ``metrics_port`` its config has metrics on and it serves them there."""
        runtime = tmp_path / "nginx"
        runtime.mkdir(exist_ok=True)
        let_workers_reach(runtime)
        settings = NginxSettings(
            listen_port=free_port(), runtime_dir=str(runtime), metrics=metrics_port is not None
        )
        env = {
            **os.environ,
            "PATH": os.pathsep.join([str(Path(nginx_bin).parent), os.environ.get("PATH", "")]),
            "PYTHONPATH": str(REPO / "nginx"),
            "POD_NAME": PROXY_POD,
            "POD_NAMESPACE": "demo",
            "SCALEDAPI_CONFIGMAP": "demo-proxy",
            "SCALEDAPI_STATUS_CONFIGMAP": "demo-proxy-status",
            "NGINX_CONF_PATH": str(runtime / "nginx.conf"),
            "SCALEDAPI_KUBE_API_URL": api.url,
            "SCALEDAPI_METRICS_PORT": str(metrics_port or 0),
        }
        log_path = tmp_path / "proxy.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scaledapi_proxy"], env=env, stdout=log, stderr=log
            )
        run = ProxyRun(api, proc, settings, log_path)
        runs.append(run)
        return run

    yield start
    for run in runs:
        stop_process(run.proc)
    api.stop()


@pytest.fixture
def start_asleep(
    start_nginx: Callable[..., Nginx],
) -> Iterator[Callable[[ScaleToZero], tuple[Nginx, ScaleToZeroThreads]]]:
    """nginx with scale to zero and no ready copy, and the reloader's threads that hold its requests."""
    started: list[ScaleToZeroThreads] = []

    def start(zero: ScaleToZero) -> tuple[Nginx, ScaleToZeroThreads]:
        nginx = start_nginx([], scale_to_zero=zero)
        runtime = Path(nginx.settings.runtime_dir)
        let_workers_reach(runtime)
        started.append(ScaleToZeroThreads(runtime, zero))
        return nginx, started[-1]

    yield start
    for threads in started:
        threads.stopping.set()
