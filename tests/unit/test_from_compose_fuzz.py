"""scaledapi from-compose never prints a traceback: whatever the compose file (and the nginx config its
proxy mounts) holds, the converter either prints a manifest the operator accepts (exit 0) or says in one
line, naming the file and the field, why it cannot (exit 2), and does so within a second.

Property-based (hypothesis): the course's compose file mutated (random keys, values, types, nesting,
shared values that the dump writes as aliases, numbers such as 1e400 and 10**5000), its text mutated, and
random nginx configs. Then, explicitly, each crafted input the converter must refuse: a self-referencing
alias, 5000-deep nesting, a "billion laughs", duplicate keys, numbers that are not finite, mounts from
outside the compose file's folder (whose content is never read), oversized files, deep nginx blocks.
"""

from __future__ import annotations

import copy
import io
import re
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaledapi_operator import compose_files, from_compose
from scaledapi_operator.compose_files import MAX_FILE_BYTES, PurePythonLoader
from scaledapi_operator.from_compose import main
from scaledapi_operator.spec import parse_spec

COMPOSE_DIR = Path(__file__).resolve().parents[1] / "compose"
SAMPLE_TEXT = (COMPOSE_DIR / "compose.yaml").read_text()
SAMPLE: dict[str, Any] = yaml.safe_load(SAMPLE_TEXT)
NGINX_CONF = (COMPOSE_DIR / "nginx.conf").read_text()
PREFIX = "scaledapi from-compose: "
ONE_SECOND = 1.0
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=ONE_SECOND),
    database=None,  # writes nothing into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    folder: Path


def run(text: str | bytes, nginx: str | bytes = NGINX_CONF, service: str = "back-end") -> Outcome:
    """`scaledapi from-compose compose.yaml SERVICE` in a folder of its own with `nginx` as ./nginx.conf."""
    with tempfile.TemporaryDirectory(prefix="from-compose-") as name:
        folder = Path(name)
        for file, content in (("compose.yaml", text), ("nginx.conf", nginx)):
            data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
            (folder / file).write_bytes(data)
        out, err = io.StringIO(), io.StringIO()
        start = time.monotonic()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([str(folder / "compose.yaml"), "--", service])  # a service may start with "-"
        return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - start, folder)


def assert_converted_or_refused(outcome: Outcome) -> None:
    """Exit 0 with a manifest the operator accepts, or exit 2 with one line; never the catch-all."""
    lines = outcome.err.splitlines()
    assert all(line.startswith(PREFIX) for line in lines), lines
    if outcome.code == 0:
        manifest = yaml.safe_load(outcome.out)
        assert (manifest["apiVersion"], manifest["kind"]) == ("scaledapi.dev/v1alpha1", "ScaledApi")
        parse_spec(manifest["spec"])
        assert not any(line.startswith(f"{PREFIX}error:") for line in lines), lines
    else:
        assert outcome.code == 2, outcome
        assert outcome.out == ""
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"{PREFIX}error: {outcome.folder / 'compose.yaml'}: "), lines
        # The catch-all is the last resort, not how an input is refused: every cause has its own message.
        assert "cannot be converted (" not in lines[0], lines
    assert outcome.seconds < ONE_SECOND, outcome


def short(value: Any) -> str | None:
    """A test id: a crafted input cut short (pytest would print all 5000 brackets)."""
    return ascii(value)[:40] if isinstance(value, str | bytes) else None


def refused(outcome: Outcome, message: str) -> None:
    """Exit 2, one line, matching `message` after the file's name."""
    assert_converted_or_refused(outcome)
    assert outcome.code == 2, outcome
    said = outcome.err.splitlines()[0].removeprefix(f"{PREFIX}error: {outcome.folder / 'compose.yaml'}: ")
    assert re.search(message, said), said


# --- property-based ----------------------------------------------------------------------------------------

KEYS = [
    "image", "build", "command", "entrypoint", "working_dir", "environment", "user", "expose", "ports",
    "deploy", "resources", "limits", "reservations", "cpus", "memory", "replicas", "scale", "healthcheck",
    "test", "interval", "timeout", "retries", "start_period", "disable", "volumes", "depends_on", "source",
    "target", "type", "published", "PORT", "back-end", "nginx", "services", "<<",
]  # fmt: skip
TEXTS = [
    "1e400", "-1e400", "inf", "nan", ".inf", "-1", "0", "5000", "65536", "8080:80", "127.0.0.1:80:5000/tcp",
    "5000-5001", "${TAG}", "$$", "$", "~", "../../../etc/passwd", "/etc/passwd", "./nginx.conf",
    "./nginx.conf:/etc/nginx/nginx.conf", "/etc/nginx/conf.d/default.conf", "root", "0:0", "app:staff",
    "1000:2000", "256M", "1.5g", "9" * 120, "0.5", "CMD", "CMD-SHELL", "NONE",
    "curl -f http://localhost:5000/health || exit 1", "wget -qO- http://127.0.0.1:5000/ || exit 1",
    "1m30s", "500ms", "99999h", "python3 'unbalanced", "\u2028", "a\nb", "\x85", "²", "٣",
]  # fmt: skip
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**99, -(10**99), 2**63, 2**64, 65535, 65536, 0, 1, 50, 51]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), NUMBERS, st.sampled_from(TEXTS), st.text(max_size=20), st.sampled_from(KEYS)
)
KEY = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3), st.booleans())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)),
    max_leaves=12,
)


def _containers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every dict and list in `value`, with its path."""
    if isinstance(value, dict | list):
        yield path, value
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from _containers(item, (*path, key))


@st.composite
def mutated_sample(draw: st.DrawFn) -> Any:
    """The course's compose file with a few random edits: a value replaced, a key added or removed, one
    value shared in two places (the dump writes it as an anchor and an alias)."""
    document = copy.deepcopy(SAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        containers = list(_containers(document))
        path, target = containers[draw(st.integers(0, len(containers) - 1))]
        # The top level only grows: a file without its services says no more than that.
        action = draw(st.sampled_from(["replace", "add", "remove", "share"])) if path else "add"
        if isinstance(target, dict):
            keys = list(target)
            if action == "add" or not keys:
                target[draw(KEY)] = draw(VALUES)
            elif action == "remove":
                del target[keys[draw(st.integers(0, len(keys) - 1))]]
            elif action == "share":
                _, other = containers[draw(st.integers(0, len(containers) - 1))]
                if other is not target and not any(c is target for _, c in _containers(other)):
                    target[draw(st.sampled_from(keys))] = other
            else:
                target[draw(st.sampled_from(keys))] = draw(VALUES)
        elif target and action in ("replace", "share"):
            target[draw(st.integers(0, len(target) - 1))] = draw(VALUES)
        elif action == "remove" and target:
            target.pop()
        else:
            target.append(draw(VALUES))
    return document


@FUZZ
@given(mutated_sample())
def test_a_mutated_compose_file_converts_or_is_refused_in_one_line(document: Any) -> None:
    assert_converted_or_refused(run(yaml.safe_dump(document, allow_unicode=True)))


YAML_SNIPPETS = [
    "&a [*a]", "*undefined", "&x {<<: *x}", "!!float abc", "!!bool maybe", "!!timestamp x", "!!binary ???",
    "!!int 0xZZ", "!!python/object:os.system x", "{a: 1, a: 2}", "[" * 100 + "]" * 100, "1e400", ".nan",
    "9" * 200, "0o17", "0x1F", "'\\x00'", '"\\ud800"', "? [a]\n: b", "!!set {a, b}", "!!omap [a: 1]",
    "5000:50", "yes", "~", "--- a\n--- b", "%YAML 1.1\n---\nx", "|\n  text", "\t", "\x00", "\ufeff",
]  # fmt: skip


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """The course's compose file as text, with characters replaced or YAML snippets put in."""
    text = SAMPLE_TEXT
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        end = at + draw(st.integers(0, 8))
        if draw(st.booleans()):
            piece = draw(st.sampled_from(YAML_SNIPPETS))
        else:
            piece = draw(st.text(alphabet=":-[]{}&*!|>'\"#,? \n\t$%@`", max_size=6))
        text = text[:at] + piece + text[end:]
    return text


@FUZZ
@given(mutated_text())
def test_a_mutated_compose_text_converts_or_is_refused_in_one_line(text: str) -> None:
    assert_converted_or_refused(run(text))


NGINX_WORDS = [
    "server", "upstream", "back-end", "location", "/", "proxy_pass", "http://back-end:5000",
    "http://back-end", "http://back-end:99999", "http://$host", "https://back-end", "server back-end:5000;",
    "listen 8080;", "{", "}", ";", "#", '"', "'", "\\", "events {}", "http {", "\n", " ", "include x;",
]  # fmt: skip


@settings(FUZZ, max_examples=150)
@given(st.lists(st.sampled_from(NGINX_WORDS), max_size=60).map(" ".join))
def test_a_random_nginx_conf_converts_or_is_refused_in_one_line(conf: str) -> None:
    outcome = run(SAMPLE_TEXT, nginx=conf)
    assert_converted_or_refused(outcome)
    assert outcome.code == 0 or "volumes[0]" in outcome.err, outcome.err


@settings(FUZZ, max_examples=100)
@given(st.text(alphabet=string.printable, max_size=40), st.text(max_size=10))
def test_any_service_name_and_backend_image_convert_or_are_refused_in_one_line(
    service: str, image: str
) -> None:
    document = {
        "services": {service: {"image": image, "expose": ["5000"]}, "nginx": SAMPLE["services"]["nginx"]}
    }
    assert_converted_or_refused(run(yaml.safe_dump(document), service=service))


# --- crafted inputs ----------------------------------------------------------------------------------------


def billion_laughs() -> str:
    """The classic: nine levels of nine aliases, 9**9 strings once expanded, in under 600 bytes."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    return "\n".join([*lines, "services: {back-end: {image: *i}}", ""])


LOADERS = {"libyaml": compose_files.Loader, "pure Python": PurePythonLoader}


@pytest.fixture(params=list(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each crafted YAML input through both loaders: libyaml's parser (when PyYAML has it) and PyYAML's."""
    monkeypatch.setattr(compose_files, "Loader", LOADERS[request.param])
    name: str = request.param
    return name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: &s\n  back-end: *s\n", r"^refused: the alias \*s is inside the value it names .* line 2"),
        ("services: &a [*a]\n", r"^refused: the alias \*a is inside the value it names"),
        ("x: &x {<<: *x}\n", r"^refused: the alias \*x is inside the value it names"),
        ("services: " + "[" * 5000 + "]" * 5000 + "\n", r"^refused: nested deeper than 64 levels at line 1"),
        ("services: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", r"^refused: nested deeper than 64 levels"),
        ("services:\n" + "".join(f"{'  ' * (level + 1)}k{level}:\n" for level in range(200)),
         r"^refused: nested deeper than 64 levels at line 64"),
        (billion_laughs(), r"^refused: more than 100000 values once its aliases are expanded"),
        ("a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n", r"^refused: more than 100 aliases"),
        ("services:\n  back-end:\n    image: a\n    expose: [80]\n    image: b\n",
         r"^not YAML: the key 'image' is given twice in one mapping \(first at line 3\) at line 5, col"),
        ("services: {back-end: {scale: " + "9" * 5000 + "}}\n",
         r"^refused: an integer of more than 100 digits at line 1"),
        ("x: !!float abc\n", r"^not YAML: cannot read this tag:yaml.org,2002:float value \(ValueError\)"),
        ("x: !!bool maybe\n", r"^not YAML: cannot read this tag:yaml.org,2002:bool value"),
        ("x: !!timestamp x\n", r"^not YAML: cannot read this tag:yaml.org,2002:timestamp value"),
        ("x: !!int 0xZZ\n", r"^not YAML: not an integer: '0xZZ'"),
        ("x: !!python/object:os.system ls\n", r"^not YAML: could not determine a constructor"),
        ("x: 1\n---\ny: 2\n", r"^not YAML: expected a single document .*but found another document"),
    ],
    ids=short,
)  # fmt: skip
def test_crafted_yaml_is_refused_in_one_line_within_a_second(loader: str, text: str, message: str) -> None:
    refused(run(text), message)


def test_the_billion_laughs_is_small() -> None:
    assert len(billion_laughs()) < 600


CPUS = (
    "services:\n  back-end:\n    image: a\n    expose: [80]\n    deploy: {resources: {limits: {cpus: %s}}}\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CPUS % "'1e400'",
         r"services\.back-end\.deploy\.resources\.limits\.cpus: must be a positive number .*'1e400'"),
        (CPUS % "1e400", r"services\.back-end\.deploy\.resources\.limits\.cpus: must be .* got inf$"),
        (CPUS % ".inf", r"\.cpus: must be a positive number of CPUs"),
        (CPUS % "-.inf", r"\.cpus: must be a positive number of CPUs"),
        (CPUS % ".nan", r"\.cpus: must be a positive number of CPUs .* got nan$"),
        (CPUS % "'nan'", r"\.cpus: must be a positive number of CPUs"),
        (CPUS % "100000", r"\.cpus: must be a positive number of CPUs up to 4096"),
        (CPUS.replace("cpus", "memory") % ("9" * 30 + "G"),
         r"\.limits\.memory: .* is more than 9223372036854775807 bytes"),
        (CPUS.replace("cpus", "memory") % ("9" * 31), r"\.limits\.memory: must be a byte value"),
        ("services:\n  back-end:\n    image: a\n    expose: [80]\n    deploy: {replicas: 1e400}\n",
         r"services\.back-end\.deploy\.replicas: must be a whole number from 0 to 50, got inf$"),
        ("services:\n  back-end:\n    image: a\n    expose: [80]\n    scale: " + "9" * 99 + "\n",
         r"services\.back-end\.scale: must be a whole number from 0 to 50, got 9{77}\.\.\.$"),
        ("services:\n  back-end:\n    image: a\n    expose: ['" + "9" * 5000 + "']\n",
         r"services\.back-end\.expose\[0\]: '9+\.\.\. is not a single port"),
        ("services:\n  back-end:\n    image: a\n    expose: ['²']\n",
         r"expose\[0\]: '²' is not a single port"),
        ("services:\n  back-end:\n    image: a\n    expose: [80]\n    user: '99999999999'\n",
         r"services\.back-end\.user: '99999999999' is more than 2147483647$"),
        ("services:\n  back-end:\n    image: a\n    expose: [80]\n    user: '1:²'\n", None),
        ("services:\n  back-end:\n    image: a\n    environment: {PORT: '" + "9" * 5000 + "'}\n",
         r"services\.back-end\.environment\.PORT: '9+\.\.\. is not a single port"),
        ("services:\n  back-end:\n    image: a\n    expose: [80]\n"
         "    healthcheck: {test: [CMD, 'true'], interval: 1e400}\n",
         r"services\.back-end\.healthcheck\.interval: must be a duration such as 30s or 1m30s, got inf$"),
        ("services:\n  back-end:\n    image: a\n    expose: [80]\n"
         "    healthcheck: {test: [CMD, 'true'], retries: " + "9" * 90 + "}\n", None),
    ],
    ids=short,
)  # fmt: skip
def test_numbers_must_be_finite_and_bounded(text: str, message: str | None) -> None:
    outcome = run(text)
    if message is None:
        assert_converted_or_refused(outcome)
    else:
        refused(outcome, message)


def test_a_file_larger_than_1_mib_is_refused_and_read_no_further() -> None:
    text = "services: {}\n# " + "x" * MAX_FILE_BYTES + "\n"
    refused(run(text), r"^refused: larger than 1048576 bytes$")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"services: {back-end: {image: \xff}}\n", r"^not UTF-8 text: invalid start byte$"),
        (b"", r"^services: required"),
        (b"services: {back-end: {image: a, expose: [80]}}\x00\n", r"^not YAML: .*"),
        (b'services: {back-end: {image: a, expose: [80]}, "a\\nb": {}}\n', None),
    ],
)
def test_text_that_is_no_yaml_or_names_no_service_is_refused_in_one_line(
    content: bytes, message: str | None
) -> None:
    outcome = run(content)
    if message is None:
        assert_converted_or_refused(outcome)
    else:
        refused(outcome, message)


def test_a_field_with_a_line_break_is_still_one_line() -> None:
    outcome = run('services:\n  "a\\u2028b":\n    image: a\n', service="x\ny")
    refused(outcome, r"^services\.x\\ny: no such service \(the file has: a\\u2028b\)$")


# --- the mounted nginx config ----------------------------------------------------------------------------

OUTSIDE_CONF = "TOPSECRET upstream back-end { server back-end:5000; }"


def with_mount(source: str) -> str:
    return (
        "services:\n  back-end:\n    image: a\n    expose: [5000]\n  nginx:\n    image: nginx\n"
        f"    ports: ['8080:80']\n    volumes: ['{source}:/etc/nginx/nginx.conf']\n"
    )


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the converter reads."""
    read: list[Path] = []
    original: Callable[[Path], str] = compose_files.read_bounded

    def recording(path: Path) -> str:
        read.append(path)
        return original(path)

    monkeypatch.setattr(compose_files, "read_bounded", recording)
    return read


@pytest.mark.parametrize("kind", ["relative", "absolute", "symlink", "symlinked folder", "home"])
def test_a_mount_from_outside_the_compose_folder_is_refused_and_never_read(
    tmp_path: Path, reads: list[Path], kind: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "nginx.conf"
    secret.write_text(OUTSIDE_CONF)
    compose = tmp_path / "project" / "deep"
    compose.mkdir(parents=True)
    sources = {
        "relative": "../../outside/nginx.conf",
        "absolute": str(secret),
        "symlink": "./link.conf",
        "symlinked folder": "./conf/nginx.conf",
        "home": "~/nginx.conf",
    }
    (compose / "link.conf").symlink_to(secret)
    (compose / "conf").symlink_to(outside)
    (compose / "compose.yaml").write_text(with_mount(sources[kind]))
    err = io.StringIO()
    with redirect_stdout(io.StringIO()) as out, redirect_stderr(err):
        code = main([str(compose / "compose.yaml"), "back-end"])
    assert (code, out.getvalue()) == (2, "")
    [line] = err.getvalue().splitlines()
    source = re.escape(repr(sources[kind]))
    refusal = rf"{source} is outside the compose file's folder: refused \(it is not read\)"
    assert re.fullmatch(rf".*: services\.nginx\.volumes\[0\]: {refusal}", line), line
    assert "TOPSECRET" not in line
    assert secret.resolve() not in [path.resolve() for path in reads]


def test_a_mount_inside_the_folder_through_a_symlink_is_read(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "real.conf").write_text(NGINX_CONF)
    (tmp_path / "nginx.conf").symlink_to(tmp_path / "conf" / "real.conf")
    (tmp_path / "compose.yaml").write_text(SAMPLE_TEXT)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        assert main([str(tmp_path / "compose.yaml"), "back-end"]) == 0
    assert "nginx.conf" not in err.getvalue()  # read and found to be the plain round robin


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("http " + "{ a " * 5000 + "}" * 5000,
         r"volumes\[0\]: \./nginx\.conf: blocks nested deeper than 32: refused$"),
        ("# " + "x" * MAX_FILE_BYTES, r"volumes\[0\]: \./nginx\.conf: larger than 1048576 bytes: refused$"),
    ],
    ids=short,
)  # fmt: skip
def test_a_deep_or_large_nginx_conf_is_refused_naming_the_mount(conf: str, message: str) -> None:
    refused(run(SAMPLE_TEXT, nginx=conf), r"^services\.nginx\." + message)


@pytest.mark.parametrize("conf", ["http { server { listen 80; }", b"\xff\xfe", "}"])
def test_an_nginx_conf_that_cannot_be_parsed_is_one_warning(conf: str | bytes) -> None:
    outcome = run(SAMPLE_TEXT, nginx=conf)
    assert_converted_or_refused(outcome)
    assert outcome.code == 0 and "the whole file, which could not be read" in outcome.err


# --- the last resort ----------------------------------------------------------------------------------------


def test_an_unexpected_exception_is_still_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(from_compose, "convert", broken)
    outcome = run(SAMPLE_TEXT)
    assert (outcome.code, outcome.out) == (2, "")
    [line] = outcome.err.splitlines()
    assert line.endswith("compose.yaml: cannot be converted (RuntimeError: 'a bug\\nover two lines')"), line
