"""A compose service's healthcheck as the backend's readiness check, as kompose maps it. Pure functions.

- A test that fetches a local URL and fails on an HTTP error (curl -f/--fail, wget, which fails on one by
  itself; as a CMD list, a CMD-SHELL string, or a plain string, optionally ending `|| exit 1`) becomes
  readiness type HTTP with the URL's path: the kubelet makes the request, the image needs no curl. The
  URL's host must be localhost, 127.0.0.1 or [::1] and its port the backend's: a check of another port
  (a management port, say) stays a command (below), as compose ran it.
- Any other test becomes readiness type Exec: the command runs in the container, as compose ran it
  (CMD-SHELL through /bin/sh -c), and the image must have what it calls.
- interval -> periodSeconds, retries -> failureThreshold, start_period -> initialDelaySeconds, each
  rounded up to whole seconds and brought within the CRD's bounds (a warning says so); what is not given
  keeps the CRD's default (checks every 2 s), not compose's (every 30 s): a copy leaves the upstream in
  seconds. timeout and start_interval have no readiness field: the kubelet gives a check 1 s.
- Liveness stays a TCP connect on the port, as without a healthcheck: compose never restarts a container
  for failing its check, and the check is now what takes a copy out of the upstream.
- No test, `test: [NONE]` or `disable: true`: readiness is a TCP connect, as without a healthcheck.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaledapi_operator.compose_values import (
    ComposeError,
    ComposeWarning,
    as_mapping,
    scalar_text,
    shown,
)
from scaledapi_operator.container_spec import MAX_ARGUMENT_LENGTH, MAX_ARGUMENTS, MAX_PATH_LENGTH

_KEYS = ("test", "interval", "timeout", "retries", "start_period", "start_interval", "disable")
SHELL = ("/bin/sh", "-c")
# Compose durations: 1m30s, 10s, 500ms, 1.5h.
_DURATION_PART = r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(h|ms|m|s|us|µs|ns)"
_DURATION = re.compile(f"(?:{_DURATION_PART})+")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# What the kubelet's 1 s timeout is, as compose spells it.
_KUBELET_TIMEOUT_SECONDS = 1.0
_LOCAL_URL = re.compile(
    r"http://(?:localhost|127\.0\.0\.1|\[::1\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*)?(?:#.*)?",
    re.DOTALL,
)
_SHELL_OPERATOR = frozenset("();<>|&")
_SHELL_SUFFIXES = (("||", "exit", "1"), ("||", "exit"), ("||", "false"))
_SHELLS = ("sh", "bash", "ash", "dash")
_CURL_FAIL = ("-f", "--fail", "--fail-with-body")
_CURL_QUIET = ("-s", "--silent", "-S", "--show-error", "-L", "--location")
_CURL_SHORT = re.compile(r"-[fsSL]+")
_WGET_QUIET = ("-q", "--quiet", "--spider", "-nv", "--no-verbose")
_WGET_OUTPUT = re.compile(r"-q?O(?P<value>.*)", re.DOTALL)
_DISCARDED = ("-", "/dev/null")
_NUMBER = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")


@dataclass(frozen=True)
class HealthChecks:
    """spec.backend.readiness, and spec.backend.liveness when it must be said (None: the default)."""

    readiness: dict[str, Any] = field(default_factory=lambda: {"type": "TCP"})
    liveness: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Test:
    """A healthcheck test: the command to run (argv) and, for CMD-SHELL, the shell line it came from."""

    argv: tuple[str, ...]
    shell: str | None = None


def _unescaped(text: str) -> str:
    # Compose turns $$ into $ (its escape) before it runs the check; the kubelet runs a probe's command
    # as it is.
    return text.replace("$$", "$")


def _parse_test(value: Any, field: str) -> _Test | None:
    """The test as a command, None for NONE."""
    if isinstance(value, str):
        words: Sequence[Any] = ["CMD-SHELL", value]
    elif isinstance(value, list) and value:
        words = value
    else:
        raise ComposeError(field, "must be a string or a list starting with NONE, CMD or CMD-SHELL")
    kind = scalar_text(words[0], f"{field}[0]")
    rest = [_unescaped(scalar_text(word, f"{field}[{index}]")) for index, word in enumerate(words[1:], 1)]
    if kind == "NONE":
        return None
    if kind not in ("CMD", "CMD-SHELL"):
        raise ComposeError(f"{field}[0]", f"must be NONE, CMD or CMD-SHELL, got {shown(kind)}")
    if not rest or not rest[0].strip():
        raise ComposeError(field, "names no command to run")
    if kind == "CMD":
        return _Test(tuple(rest))
    shell = " ".join(rest)
    return _Test((*SHELL, shell), shell)


def _shell_words(line: str) -> list[str] | None:
    """The words of a shell line that is one simple command, optionally followed by `|| exit 1`; None for
    anything else (pipes, lists, redirections, expansions, unbalanced quotes)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:
        return None
    for suffix in _SHELL_SUFFIXES:
        if tuple(words[-len(suffix) :]) == suffix:
            words = words[: -len(suffix)]
            break
    if any(set(word) <= _SHELL_OPERATOR or "$" in word or "`" in word for word in words):
        return None
    return words


def _valued(arg: str, value: str) -> bool:
    """Whether `arg value` is a curl option that changes nothing but output and timing."""
    if arg in ("-o", "--output"):
        return value == "/dev/null"
    return arg in ("-m", "--max-time", "--connect-timeout") and _NUMBER.fullmatch(value) is not None


def _curl_url(args: Sequence[str]) -> str | None:
    """The URL of `curl -f [-sSL] [-o /dev/null] [-m N] URL`, which fails on an HTTP error."""
    fails, urls, index = False, [], 0
    while index < len(args):
        arg = args[index]
        if arg in _CURL_FAIL or _CURL_SHORT.fullmatch(arg):
            fails = fails or arg in _CURL_FAIL or "f" in arg
        elif _valued(arg, "".join(args[index + 1 : index + 2])):
            index += 1
        elif arg not in _CURL_QUIET:
            if arg.startswith("-"):
                return None
            urls.append(arg)
        index += 1
    return urls[0] if fails and len(urls) == 1 else None


def _wget_url(args: Sequence[str]) -> str | None:
    """The URL of `wget [-q] [--spider] [-O -|/dev/null] [-T N] [-t N] URL`: wget fails on an HTTP error."""
    urls, index = [], 0
    while index < len(args):
        arg = args[index]
        output = _WGET_OUTPUT.fullmatch(arg) or re.fullmatch(r"--output-document=(?P<value>.*)", arg)
        numbered = re.fullmatch(r"--(?:timeout|tries)=(?P<value>.*)", arg)
        if output is not None:
            value = output["value"]
            if not value:
                index += 1
                value = "".join(args[index : index + 1])
            if value not in _DISCARDED:
                return None
        elif numbered is not None:
            if not _NUMBER.fullmatch(numbered["value"]):
                return None
        elif arg in ("-T", "-t", "--timeout", "--tries"):
            index += 1
            if not _NUMBER.fullmatch("".join(args[index : index + 1])):
                return None
        elif arg not in _WGET_QUIET:
            if arg.startswith("-"):
                return None
            urls.append(arg)
        index += 1
    return urls[0] if len(urls) == 1 else None


def _http_check(test: _Test) -> tuple[int, str] | None:
    """(port, path) of a test that fetches a local URL and fails on an HTTP error; None for another."""
    words: Sequence[str] | None = test.argv
    if test.shell is not None:
        words = _shell_words(test.shell)
    elif len(test.argv) == 3 and test.argv[0].rpartition("/")[2] in _SHELLS and test.argv[1] == "-c":
        words = _shell_words(test.argv[2])  # CMD sh -c "curl ..."
    if not words:
        return None
    program = words[0].rpartition("/")[2]
    url = _curl_url(words[1:]) if program == "curl" else _wget_url(words[1:]) if program == "wget" else None
    match = _LOCAL_URL.fullmatch(url) if url is not None else None
    if match is None or len(match["path"] or "/") > MAX_PATH_LENGTH:
        return None
    return int(match["port"] or 80), match["path"] or "/"


def _seconds(value: Any, field: str) -> float:
    """A compose duration (1m30s, 10s, 500ms) in seconds; a bare number is seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        parts = re.findall(_DURATION_PART, value)
        seconds = sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in parts)
    else:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ComposeError(field, f"must be a duration such as 30s or 1m30s, got {shown(value)}")
    return seconds


def _within(amount: float, field: str, name: str, low: int, high: int, warnings: list[ComposeWarning]) -> int:
    """`amount` rounded up to a whole number and brought within the CRD's bounds of readiness.`name`."""
    whole = math.ceil(amount)
    if low <= whole <= high:
        return whole
    bounded = min(max(whole, low), high)
    text = f"readiness.{name} is {bounded}, the {'least' if whole < low else 'most'} the CRD allows"
    warnings.append(ComposeWarning(field, text, not_mapped=False))
    return bounded


def _timing(check: Mapping[str, Any], field: str, warnings: list[ComposeWarning]) -> dict[str, int]:
    """periodSeconds, failureThreshold and initialDelaySeconds from what the healthcheck gives."""
    timing: dict[str, int] = {}
    if check.get("interval") is not None:
        where = f"{field}.interval"
        seconds = _seconds(check["interval"], where)
        timing["periodSeconds"] = _within(seconds, where, "periodSeconds", 1, 300, warnings)
    if check.get("retries") is not None:
        where, retries = f"{field}.retries", check["retries"]
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ComposeError(where, f"must be a whole number, got {shown(retries)}")
        timing["failureThreshold"] = _within(retries, where, "failureThreshold", 1, 30, warnings)
    if check.get("start_period") is not None:
        where = f"{field}.start_period"
        seconds = _seconds(check["start_period"], where)
        timing["initialDelaySeconds"] = _within(seconds, where, "initialDelaySeconds", 0, 600, warnings)
    if check.get("timeout") is not None:
        where = f"{field}.timeout"
        if _seconds(check["timeout"], where) > _KUBELET_TIMEOUT_SECONDS:
            text = "no readiness field for it: the kubelet gives each check 1 s"
            warnings.append(ComposeWarning(where, text))
    if check.get("start_interval") is not None:
        _seconds(check["start_interval"], f"{field}.start_interval")
        text = "no readiness field for it: checks run every periodSeconds from the start"
        warnings.append(ComposeWarning(f"{field}.start_interval", text))
    return timing


def _exec_command(test: _Test, field: str) -> list[str]:
    if len(test.argv) > MAX_ARGUMENTS or any(len(word) > MAX_ARGUMENT_LENGTH for word in test.argv):
        limit = f"{MAX_ARGUMENTS} words of at most {MAX_ARGUMENT_LENGTH} characters"
        raise ComposeError(field, f"longer than a readiness command may be ({limit})")
    return list(test.argv)


def health_checks(value: Any, field: str, port: int, warnings: list[ComposeWarning]) -> HealthChecks:
    """The readiness (and liveness) checks for a service's `healthcheck` (None: there is none)."""
    if value is None:
        return HealthChecks()
    check = as_mapping(value, field)
    warnings += [
        ComposeWarning(f"{field}.{key}", "no ScaledApi field for it") for key in check if key not in _KEYS
    ]
    disable = check.get("disable", False)
    if not isinstance(disable, bool):
        raise ComposeError(f"{field}.disable", f"must be true or false, got {shown(disable)}")
    tcp = f"readiness is a TCP connect on port {port}"
    if check.get("test") is None and not disable:
        text = f"no test: compose runs the image's own HEALTHCHECK, which is not read here; {tcp}"
        warnings.append(ComposeWarning(f"{field}", text))
        return HealthChecks()
    test = None if disable else _parse_test(check["test"], f"{field}.test")
    if test is None:
        warnings.append(ComposeWarning(field, f"turned off: {tcp}", not_mapped=False))
        return HealthChecks()
    timing = _timing(check, field, warnings)
    http = _http_check(test)
    if http is not None and http[0] == port:
        return HealthChecks({"type": "HTTP", "path": http[1], **timing}, {"type": "TCP"})
    program = shown(test.argv[0] if test.shell is None else SHELL[0])
    text = f"runs in each copy as its readiness check (type Exec): the image must have {program}; unlike "
    text += "compose, a copy whose check fails gets no requests"
    if http is not None:
        text = f"checks port {http[0]}, not the backend's port {port}, so it {text}"
    warnings.append(ComposeWarning(f"{field}.test", text, not_mapped=False))
    readiness = {"type": "Exec", "command": _exec_command(test, f"{field}.test"), **timing}
    return HealthChecks(readiness, {"type": "TCP"})
