"""The files `scaledapi from-compose` reads, each bounded: the compose file and the nginx configs its
proxy service mounts. Users convert files that others wrote, so nothing in them may make the converter
hang, exhaust memory, read outside the compose file's folder or print a traceback.

The compose file is read by a loader that composes the YAML node graph itself (on libyaml's parser when
PyYAML has it, else on PyYAML's own, a SafeLoader) and refuses, naming the line: nesting deeper than
MAX_DEPTH, more than MAX_ALIASES aliases, an alias inside the value it names (which would be an endless
value), more than MAX_VALUES values once aliases are expanded (a "billion laughs"), and a key given twice
in one mapping (compose refuses that too). Plain scalars resolve as in YAML 1.2, as compose reads them:
"8080:80" stays text (YAML 1.1 would read some such as base-60 numbers), yes/no/on/off stay text, 0755 is
decimal, and an integer of more than MAX_INT_DIGITS digits is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from scaledapi_operator.compose_mapping import Directive, NginxTooDeepError, parse_nginx
from scaledapi_operator.compose_values import ComposeError, as_list

MAX_FILE_BYTES = 1 << 20  # the compose file and each mounted nginx config
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_VALUES = 100_000
MAX_INT_DIGITS = 100
_MERGE = "tag:yaml.org,2002:merge"
# Host-path sources of compose's short volume syntax start so; anything else names a volume.
_HOST_PATH = ("/", ".", "~")


class FileTooLargeError(ValueError):
    """A file above MAX_FILE_BYTES: it is not read past the limit."""


class LimitError(yaml.MarkedYAMLError):
    """The compose file is YAML, but beyond what the converter reads (a bound, named with its line)."""


def read_bounded(path: Path) -> str:
    """The file's text; FileTooLargeError past MAX_FILE_BYTES (not read further), OSError or
    UnicodeDecodeError."""
    with path.open("rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise FileTooLargeError(f"larger than {MAX_FILE_BYTES} bytes")
    return data.decode("utf-8")


class _CoreResolver(BaseResolver):
    """YAML 1.2's core schema, which compose uses: no base-60 numbers, no yes/no booleans, no dates."""


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("merge", r"^(?:<<)$", "<"),
):
    _CoreResolver.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


class _BoundedConstructor(SafeConstructor):
    """SafeConstructor whose integers are YAML 1.2's and bounded, and whose failures are YAML errors."""

    def construct_yaml_int(self, node: Node) -> int:
        text = str(self.construct_scalar(node))  # type: ignore[arg-type]
        if len(text) > MAX_INT_DIGITS:
            raise LimitError(None, None, f"an integer of more than {MAX_INT_DIGITS} digits", node.start_mark)
        sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
        base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
        try:
            return sign * int(digits[2:] if base != 10 else digits, base)
        except ValueError:
            raise ConstructorError(None, None, f"not an integer: {text!r}", node.start_mark) from None

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        # An explicit tag on a value that does not fit it (!!float abc, !!bool maybe, !!timestamp x)
        # fails inside PyYAML with a plain Python error: name the value's line instead.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
            problem = f"cannot read this {node.tag} value ({type(error).__name__})"
            raise ConstructorError(None, None, problem, node.start_mark) from None


_BoundedConstructor.add_constructor(  # type: ignore[type-var]
    "tag:yaml.org,2002:int", _BoundedConstructor.construct_yaml_int
)


class _BoundedComposer(Composer):
    """Composes the node graph while counting what an alias bomb or a deep document needs."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._aliases = 0
        self._open_anchors: set[str] = set()
        self._values: dict[int, int] = {}  # id(node) -> values under it, aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        mark = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise LimitError(None, None, f"more than {MAX_ALIASES} aliases", mark)
            if event.anchor in self._open_anchors:
                problem = f"the alias *{event.anchor} is inside the value it names (an endless value)"
                raise LimitError(None, None, problem, mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise LimitError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        anchor: str | None = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)
        if node is None:
            return None
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [item for pair in node.value for item in pair]
            self._refuse_duplicate_keys(node)
        values = 1 + sum(self._values.get(id(child), 1) for child in children)
        if values > MAX_VALUES:
            problem = f"more than {MAX_VALUES} values once its aliases are expanded"
            raise LimitError(None, None, problem, node.start_mark)
        self._values[id(node)] = values
        return node

    @staticmethod
    def _refuse_duplicate_keys(node: MappingNode) -> None:
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _MERGE:
                continue
            name = (key.tag, key.value)
            if name in seen:
                problem = f"the key {key.value!r} is given twice in one mapping (first at line {seen[name]})"
                raise ComposerError(None, None, problem, key.start_mark)
            seen[name] = key.start_mark.line + 1


class PurePythonLoader(_BoundedComposer, Reader, Scanner, Parser, _BoundedConstructor, _CoreResolver):
    """PyYAML's own scanner and parser: what SafeLoader is made of, with the bounded composer."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _BoundedComposer.__init__(self)
        _BoundedConstructor.__init__(self)
        _CoreResolver.__init__(self)


Loader: Callable[[str], Any] = PurePythonLoader
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class LibyamlLoader(_BoundedComposer, CParser, _BoundedConstructor, _CoreResolver):
        """libyaml scans and parses (about four times as fast); the graph is composed here, in Python."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            _BoundedConstructor.__init__(self)
            _CoreResolver.__init__(self)

    Loader = LibyamlLoader


def _where(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def load_yaml(text: str) -> Any:
    """The compose document in `text`; ComposeError (no field: the caller names the file) when it is no
    YAML or goes beyond a bound."""
    loader = Loader(text)
    try:
        return loader.get_single_data()
    except LimitError as error:
        raise ComposeError(None, f"refused: {error.problem}{_where(error.problem_mark)}") from None
    except yaml.MarkedYAMLError as error:
        # "expected a single document in the stream" is said as context, "but found another" as problem.
        said = f"{error.context}, {error.problem}" if str(error.problem).startswith("but ") else error.problem
        raise ComposeError(None, f"not YAML: {said}{_where(error.problem_mark)}") from None
    except yaml.YAMLError as error:
        raise ComposeError(None, f"not YAML: {' '.join(str(error).split())}") from None
    finally:
        loader.dispose()


def load_compose(path: Path) -> Any:
    try:
        text = read_bounded(path)
    except FileTooLargeError as error:
        raise ComposeError(None, f"refused: {error}") from None
    except OSError as error:
        raise ComposeError(None, f"cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ComposeError(None, f"not UTF-8 text: {error.reason}") from None
    return load_yaml(text)


# --- the nginx configs the proxy service mounts ----------------------------------------------------------


@dataclass(frozen=True)
class MountedConfig:
    """One nginx config file the proxy mounts: its directives, or why they could not be read."""

    field: str  # services.nginx.volumes[0]
    source: str  # as written in the compose file
    directives: tuple[Directive, ...] | None
    problem: str | None = None


def _volume_paths(service: Mapping[str, Any], field: str) -> Iterator[tuple[str, str, str]]:
    """(field, source, target) of each host-path volume of the service."""
    for index, volume in enumerate(as_list(service.get("volumes"), f"{field}.volumes")):
        if isinstance(volume, Mapping):
            source, target = volume.get("source"), volume.get("target")
            if volume.get("type", "bind") != "bind":
                continue
        elif isinstance(volume, str):
            source, _, rest = volume.partition(":")
            target = rest.partition(":")[0]
        else:
            continue
        if isinstance(source, str) and isinstance(target, str) and source.startswith(_HOST_PATH):
            yield f"{field}.volumes[{index}]", source, target


def _is_nginx_config(target: str) -> bool:
    target_dir, _, target_name = target.rpartition("/")
    return target.endswith("nginx.conf") or (target_dir.endswith("conf.d") and target_name.endswith(".conf"))


def _inside(source: str, where: str, compose_dir: Path) -> Path:
    """The mounted file, which must be in the compose file's folder (symbolic links resolved)."""
    folder = compose_dir.resolve()
    try:
        file = (folder / Path(source).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as error:  # a symlink loop, a NUL byte
        problem = f"{source!r} cannot be resolved ({type(error).__name__}): refused"
        raise ComposeError(where, problem) from None
    if not file.is_relative_to(folder):
        problem = f"{source!r} is outside the compose file's folder: refused (it is not read)"
        raise ComposeError(where, problem)
    return file


def mounted_nginx_configs(service: Mapping[str, Any], field: str, compose_dir: Path) -> list[MountedConfig]:
    """The nginx config files the proxy service mounts from the host, parsed. A mount from outside the
    compose file's folder, a file above MAX_FILE_BYTES or blocks nested too deep are ComposeErrors naming
    the mount; a file that cannot be read or parsed is kept with its problem (one warning)."""
    configs = []
    for where, source, target in _volume_paths(service, field):
        if not _is_nginx_config(target):
            continue
        file = _inside(source, where, compose_dir)
        if not file.is_file():
            continue
        try:
            directives = parse_nginx(read_bounded(file))
        except FileTooLargeError as error:
            raise ComposeError(where, f"{source}: {error}: refused") from None
        except NginxTooDeepError as error:
            raise ComposeError(where, f"{source}: {error}: refused") from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            problem = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            configs.append(MountedConfig(where, source, None, problem))
            continue
        configs.append(MountedConfig(where, source, directives))
    return configs
