"""What every part of the compose converter shares: its error and warning, and how it reads a compose value
of the expected shape (a mapping, a list, a scalar as text, a whole number) or refuses it naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_SHOWN = 80  # characters of a refused value repeated in a message


class ComposeError(ValueError):
    """A compose file (or option) that cannot be converted; the message names the field."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field


@dataclass(frozen=True)
class ComposeWarning:
    """Something left behind, or carried over with a caveat; `field` is its dotted path in the file."""

    field: str
    text: str
    not_mapped: bool = True

    def __str__(self) -> str:
        return f"{'not mapped: ' if self.not_mapped else ''}{self.field}: {self.text}"


def shown(value: Any) -> str:
    """A value as a message repeats it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 3]}..."


def as_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ComposeError(field, "must be a mapping")
    return value


def as_list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ComposeError(field, "must be a list")
    return value


def scalar_text(value: Any, field: str) -> str:
    """A scalar as compose turns it into a string: true -> "true", 5000 -> "5000"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ComposeError(field, f"must be a string, a number or a boolean, got {shown(value)}")


_DIGITS = re.compile(r"[0-9]+")


def whole_number(text: str, field: str, high: int) -> int | None:
    """`text` as a number when it is one in ASCII digits (None when it is not one at all); a number above
    `high` is refused naming the field, however many digits it has."""
    if not _DIGITS.fullmatch(text):
        return None
    if len(text) > len(str(high)) or int(text) > high:
        raise ComposeError(field, f"{shown(text)} is more than {high}")
    return int(text)
