"""The operator's settings from its environment: SCALEDAPI_MONITORING_NAMESPACE."""

from __future__ import annotations

import pytest

from scaledapi_operator.settings import MONITORING_NAMESPACE_ENV, monitoring_namespace


def test_monitoring_namespace_defaults_to_monitoring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MONITORING_NAMESPACE_ENV, raising=False)
    assert monitoring_namespace() == "monitoring"


@pytest.mark.parametrize(
    ("value", "wanted"), [("prometheus", "prometheus"), (" obs-1 ", "obs-1"), ("", None)]
)
def test_monitoring_namespace_given_or_none(
    monkeypatch: pytest.MonkeyPatch, value: str, wanted: str | None
) -> None:
    monkeypatch.setenv(MONITORING_NAMESPACE_ENV, value)
    assert monitoring_namespace() == wanted


@pytest.mark.parametrize("value", ["Monitoring", "a_b", "-x", "x" * 64, "a.b"])
def test_a_bad_monitoring_namespace_is_an_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(MONITORING_NAMESPACE_ENV, value)
    with pytest.raises(ValueError, match=MONITORING_NAMESPACE_ENV):
        monitoring_namespace()
