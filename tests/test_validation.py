"""What the registry checks of a model's arguments before a tool runs: JSON types strictly
(pydantic, as JSON), the schema the model was given when pydantic is absent, a tool's own
schema, and cross-field checks whose message the model reads."""

from __future__ import annotations

import datetime
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrysafe import ToolRegistry, tool
from retrysafe._dispatch import schema_problems


def registry_with(**options: Any) -> ToolRegistry:
    registry = ToolRegistry(**options)

    @tool.read(registry=registry, cache_ttl=None)
    def book(room: str, nights: int, breakfast: bool = False) -> str:
        """Book a room."""
        return f"{room} x{nights} breakfast={breakfast}"

    @tool.read(registry=registry, cache_ttl=None)
    def agenda(day: datetime.date) -> str:
        """The agenda of a day."""
        return day.isoformat()

    return registry


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"room": "a", "nights": True}, "nights"),  # a bool is no int
        ({"room": "a", "nights": "3"}, "nights"),  # a str is no int
        ({"room": "a", "nights": 2, "breakfast": 1}, "breakfast"),  # an int is no bool
        ({"room": "a", "nights": 2.5}, "nights"),
    ],
)
def test_json_types_are_strict_by_default(arguments: dict[str, Any], field: str) -> None:
    outcome = registry_with().call_sync("book", arguments)
    assert (not outcome.ok) and field in outcome.text, outcome.text


def test_lax_conversions_are_a_switch() -> None:
    outcome = registry_with(strict=False).call_sync("book", {"room": "a", "nights": "3"})
    assert outcome.ok and "x3" in outcome.text


def test_strict_json_still_reads_dates_as_json_carries_them() -> None:
    outcome = registry_with().call_sync("agenda", {"day": "2026-12-04"})
    assert outcome.ok and "2026-12-04" == outcome.text


def test_a_tools_own_schema_and_a_cross_field_check_reach_the_model() -> None:
    registry = ToolRegistry()
    schema = {
        "type": "object",
        "properties": {
            "start": {"type": "integer", "minimum": 0},
            "end": {"type": "integer", "minimum": 0},
        },
        "required": ["start", "end"],
        "additionalProperties": False,
    }

    def ordered(arguments: dict[str, Any]) -> str | None:
        return None if arguments["end"] > arguments["start"] else "end must be after start"

    @tool.read(registry=registry, cache_ttl=None, schema=schema, check=ordered)
    def span(start: int, end: int) -> int:
        """The length of a span."""
        return end - start

    assert schema == registry["span"].parameters
    assert "3" == registry.call_sync("span", {"start": 1, "end": 4}).text
    backwards = registry.call_sync("span", {"start": 4, "end": 1})
    assert (not backwards.ok) and "end must be after start" in backwards.text
    negative = registry.call_sync("span", {"start": -1, "end": 4})
    assert (not negative.ok) and "at least 0" in negative.text
    with pytest.raises(ValueError, match="schema of an object"):
        registry.add(span, name="other", schema={"type": "array"})


def test_without_pydantic_the_schema_is_checked(tmp_path: Any) -> None:
    """pydantic is no dependency of retrysafe: without it the model's arguments are checked
    against the schema it was given (a str for an int was run unchecked)."""
    script = """
import sys
sys.modules["pydantic"] = None  # not installed
from retrysafe import ToolRegistry, tool
registry = ToolRegistry()
@tool.read(registry=registry, cache_ttl=None)
def hello(name: str, times: int = 1) -> str:
    '''Say hello.'''
    return "hi " + name * times
bad = registry.call_sync("hello", {"name": 42})
flag = registry.call_sync("hello", {"name": "a", "times": True})
good = registry.call_sync("hello", {"name": "a", "times": 2})
print(not bad.ok, "name" in bad.text, not flag.ok, good.text)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert "True True True hi aa" == done.stdout.strip(), done.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(json_values)
def test_schema_types_follow_json(value: Any) -> None:
    """A value passes ``{"type": T}`` exactly when JSON's type of it is T (a bool is
    boolean only, an integer both integer and number)."""
    expected = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    for kind, ok in expected.items():
        assert ok == (not schema_problems(value, {"type": kind}, "")), (kind, value)
