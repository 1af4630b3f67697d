"""Helpers for the test suites of code that uses retrysafe.

>>> from retrysafe import testing
>>> with testing.retries_disabled_waits(attempts=2):
...     run_the_code_under_test()     # retries happen at once, at most 2 attempts
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._retry import TESTING

__all__ = ["is_testing", "retries_disabled_waits", "set_testing"]


def set_testing(active: bool, *, attempts: int | None = None) -> None:
    """Turn testing mode on or off: every retry wait becomes zero, and with ``attempts``
    no call makes more attempts than that (``attempts=1``: no retries at all)."""
    if attempts is not None and (
        not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1
    ):
        raise ValueError(f"attempts must be an int >= 1 or None, got {attempts!r}")
    TESTING.active = bool(active)
    TESTING.attempts = attempts if active else None


def is_testing() -> bool:
    """Whether testing mode is on."""
    return TESTING.active


@contextmanager
def retries_disabled_waits(*, attempts: int | None = None) -> Iterator[None]:
    """Testing mode for the duration of a ``with`` block; the previous mode is restored."""
    previous = (TESTING.active, TESTING.attempts)
    set_testing(True, attempts=attempts)
    try:
        yield
    finally:
        TESTING.active, TESTING.attempts = previous
