"""The error of a spec the operator cannot act on (its own module, so that every parser can raise it)."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec the operator cannot act on; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"spec.{field}: {problem}")
        self.field = f"spec.{field}"
