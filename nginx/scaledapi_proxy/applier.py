"""Put a new nginx config live without a cluster: candidate file, ``nginx -t``, atomic rename, SIGHUP.

A text that fails the check never touches the live file. Integration tests drive this class against a real
nginx; the reloader calls it for every changed ConfigMap text.

``apply`` either returns a definite result (Applied, or Rejected by ``nginx -t``) or raises ``ApplyError``
when it could not find out or did not get there (an I/O error, ``nginx -t`` timed out or was killed, the
master went away, or it kept its old config after SIGHUP); the caller retries those, and only a definite
result is remembered in ``last_hash``. When the text was put live but the master did not take it, the
previous file is put back first: the live file is always what the running master serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

APPLIED = "Applied"
REJECTED = "Rejected"
CANDIDATE_SUFFIX = ".candidate"
MAX_MESSAGE_CHARS = 1000


def config_hash(text: str) -> str:
    """First 16 hex digits of the SHA-256 of a config text; the operator uses this one too."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def nginx_check_command(nginx_bin: str, conf_path: str) -> list[str]:
    # -e stderr: nginx >= 1.19.5 opens this instead of the compiled-in /var/log/nginx/error.log, which a
    # non-root user cannot write. -g 'daemon off;' as at start, so a config with `daemon` fails here.
    return [nginx_bin, "-t", "-q", "-e", "stderr", "-c", conf_path, "-g", "daemon off;"]


def nginx_run_command(nginx_bin: str, conf_path: str) -> list[str]:
    return [nginx_bin, "-e", "stderr", "-c", conf_path, "-g", "daemon off;"]


def worker_pids(master_pid: int) -> set[int] | None:
    """Children of a process (for the nginx master: its workers) from /proc, None when not observable.

    Each thread lists only the children it forked itself, so all of the process's threads are read.
    """
    try:
        tasks = os.listdir(f"/proc/{master_pid}/task")
    except OSError:
        return None
    pids: set[int] = set()
    readable = False
    for task in tasks:
        try:
            with open(f"/proc/{master_pid}/task/{task}/children", encoding="ascii") as f:
                pids.update(int(p) for p in f.read().split())
            readable = True
        except (OSError, ValueError):
            continue  # the thread ended meanwhile, or the kernel has no children file
    return pids if readable else None


def shorten(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    message = message.strip()
    return message if len(message) <= limit else "..." + message[-(limit - 3) :]


class ApplyError(Exception):
    """No verdict on the text (I/O error, ``nginx -t`` timeout or crash): try the same text again later."""


@dataclass(frozen=True)
class ApplyResult:
    hash: str
    state: str  # APPLIED or REJECTED
    message: str
    check_ms: float
    reload_ms: float  # SIGHUP until new workers run (0 when nginx is not running yet)
    total_ms: float
    reloaded: bool


class NginxApplier:
    """Checks and applies config texts for one nginx master.

    ``master_pid`` returns the pid of the running nginx master, or None before nginx runs (then the text is
    only checked and written; the caller starts nginx with it).
    """

    def __init__(
        self,
        live_path: str,
        *,
        nginx_bin: str = "nginx",
        master_pid: Callable[[], int | None] = lambda: None,
        check_timeout_s: float = 30.0,
        reload_confirm_s: float = 5.0,
    ) -> None:
        self.live_path = live_path
        self.candidate_path = live_path + CANDIDATE_SUFFIX
        self.nginx_bin = nginx_bin
        self.master_pid = master_pid
        self.check_timeout_s = check_timeout_s
        self.reload_confirm_s = reload_confirm_s
        self.last_hash: str | None = None  # last text with a definite result, applied or rejected
        self.applied_hash: str | None = None

    def needs_apply(self, text: str) -> bool:
        """Decision: only a text that differs from the last one with a definite result is tried again."""
        return config_hash(text) != self.last_hash

    def check(self, conf_path: str) -> tuple[bool, str]:
        """Run ``nginx -t`` on a file; (ok, nginx's own message). ApplyError when nginx gave no verdict."""
        try:
            proc = subprocess.run(
                nginx_check_command(self.nginx_bin, conf_path),
                capture_output=True,
                text=True,
                timeout=self.check_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ApplyError(f"nginx -t did not finish within {self.check_timeout_s:g}s") from exc
        except OSError as exc:  # not found, not executable, no memory to fork
            raise ApplyError(f"cannot run {self.nginx_bin} -t: {exc}") from exc
        output = "\n".join(s for s in (proc.stderr.strip(), proc.stdout.strip()) if s)
        if proc.returncode < 0:  # killed by a signal (the OOM killer, say): no verdict on the text
            raise ApplyError(f"nginx -t was killed by signal {-proc.returncode}: {shorten(output, 300)}")
        if proc.returncode == 0:
            return True, output or "nginx -t: syntax is ok, test is successful"
        return False, output or f"nginx -t exited with {proc.returncode}"

    def _write_candidate(self, text: str) -> None:
        os.makedirs(os.path.dirname(self.live_path) or ".", exist_ok=True)
        fd = os.open(self.candidate_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)

    def apply(self, text: str) -> ApplyResult:
        """Check and put ``text`` live; a definite result, or ApplyError (nothing remembered)."""
        try:
            result = self._apply(text)
        except OSError as exc:  # writing the candidate, the rename, the signal
            self._drop_candidate()
            raise ApplyError(f"{type(exc).__name__}: {exc}") from exc
        except ApplyError:
            self._drop_candidate()
            raise
        self.last_hash = result.hash
        if result.state == APPLIED:
            self.applied_hash = result.hash
        return result

    def _drop_candidate(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.candidate_path)

    def _apply(self, text: str) -> ApplyResult:
        start = time.monotonic()
        digest = config_hash(text)
        self._write_candidate(text)
        ok, check_message = self.check(self.candidate_path)
        checked = time.monotonic()
        check_ms = (checked - start) * 1000
        if not ok:
            self._drop_candidate()
            return ApplyResult(
                digest,
                REJECTED,
                shorten(check_message),
                check_ms,
                0.0,
                (time.monotonic() - start) * 1000,
                False,
            )

        pid = self.master_pid()
        before = worker_pids(pid) if pid is not None else None
        previous = self._read_live() if pid is not None else None  # what the running master serves
        os.replace(self.candidate_path, self.live_path)  # atomic: nginx never reads a half-written file
        if pid is None:
            end = time.monotonic()
            return ApplyResult(
                digest,
                APPLIED,
                "nginx -t ok; written as the initial config",
                check_ms,
                0.0,
                (end - start) * 1000,
                False,
            )

        hup = time.monotonic()
        try:
            os.kill(pid, signal.SIGHUP)
            message = self._await_new_workers(pid, before)
        except (ApplyError, OSError) as exc:
            raise ApplyError(f"{exc}{self._restore(previous)}") from exc
        end = time.monotonic()
        return ApplyResult(digest, APPLIED, message, check_ms, (end - hup) * 1000, (end - start) * 1000, True)

    def _read_live(self) -> bytes | None:
        """The live file as it is (None when there is none yet)."""
        try:
            with open(self.live_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _restore(self, previous: bytes | None) -> str:
        """Put the file the master serves back live after a reload it did not take; what to add to the
        error's message."""
        if previous is None:
            return ""
        try:
            fd = os.open(self.candidate_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(previous)
            os.replace(self.candidate_path, self.live_path)
        except OSError as exc:
            return f"; the previous file could not be put back: {type(exc).__name__}: {exc}"
        return "; the previous file is live again"

    def _await_new_workers(self, pid: int, before: set[int] | None) -> str:
        """Wait until nginx serves new connections with the new config only; the result's message.

        The master starts new workers, pauses about 100 ms, then tells the old workers to stop accepting;
        until then both generations accept. Done = a new worker runs and every old one has exited or
        renamed itself "worker process is shutting down". ApplyError when the master went away, or
        started no new worker in time: it kept its old config (a port it cannot bind, say; its error is
        in the nginx log), which may well pass, so it is no verdict on the text.
        """
        if before is None:
            return "nginx -t ok; reload signalled (workers not observable)"
        deadline = time.monotonic() + self.reload_confirm_s
        while True:
            now = worker_pids(pid)
            if now is None:  # no verdict on the text; the process exits with nginx anyway
                raise ApplyError("nginx master went away during the reload")
            fresh = now - before
            if fresh and all(not is_accepting_worker(old) for old in before & now):
                return f"nginx -t ok; reloaded, new workers {sorted(fresh)}"
            if time.monotonic() >= deadline:
                if fresh:
                    return f"nginx -t ok; reloaded, new workers {sorted(fresh)}, old ones still accepting"
                raise ApplyError(
                    f"nginx -t ok but nginx started no new workers within {self.reload_confirm_s:g}s "
                    "after SIGHUP (it kept its old config; see the nginx log)"
                )
            time.sleep(0.002)  # poll interval, bounded by the deadline above


def is_accepting_worker(pid: int) -> bool:
    """False once an nginx worker has exited or retitled itself as shutting down (stopped accepting)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read()
    except OSError:
        return False
    return b"shutting down" not in title
