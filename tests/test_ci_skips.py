"""Under CI a skip fails the run, except for the checks `make test-slow` alone runs."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

_TESTS = """
import pytest

def test_needs_an_extra():
    pytest.importorskip("no_such_module_retrysafe_needs")

@pytest.mark.skipif(True, reason="make test-slow only")
def test_slow():
    pass

def test_runs():
    pass
"""


@pytest.mark.parametrize(
    ("ci", "outcomes"),
    [("true", {"failed": 1, "skipped": 1, "passed": 1}), ("", {"skipped": 2, "passed": 1})],
)
def test_a_skip_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcomes: dict[str, int]
) -> None:
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401")
    pytester.makepyfile(_TESTS)
    monkeypatch.setenv("CI", ci)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(**outcomes)
