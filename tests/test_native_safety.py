"""The native encoder never crashes its host: a regression test for every defect found.

Cases that crashed the interpreter run in a subprocess, so that a regression fails the test
(naming the signal) instead of killing the suite. `make crash-hunt` runs many more such
cases on every Python version the machine has.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import inspect
import signal
import subprocess
import sys
import textwrap
import unittest.mock
from typing import Any

import pytest

from retrysafe import (
    FingerprintTypeError,
    FingerprintValueError,
    IdempKey,
    canonical_json,
    fingerprint,
)
from retrysafe._native import CallKeyer


def run_isolated(code: str, timeout: float = 120) -> str:
    """Runs `code` in a fresh interpreter; fails naming the signal if it crashes."""
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        pytest.fail(f"the interpreter died of {name}:\n{done.stderr[-3000:]}")
    assert "panicked" not in done.stderr
    assert 0 == done.returncode, done.stderr[-3000:]
    return done.stdout


class IsoInt(datetime.date):
    def isoformat(self) -> Any:  # type: ignore[override]
        return 12345


class IsoBytes(datetime.date):
    def isoformat(self) -> Any:  # type: ignore[override]
        return b"`" * 64


class IsoAccentTime(datetime.time):
    def isoformat(self, *args: Any) -> str:  # type: ignore[override]
        return "é" * 12


class IsoAccentDateTime(datetime.datetime):
    def isoformat(self, *args: Any) -> str:  # type: ignore[override]
        return "é" * 12


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (IsoInt(2020, 1, 2), b'"2020-01-02"'),
        (IsoBytes(2020, 1, 2), b'"2020-01-02"'),
        (IsoAccentTime(1, 2, 3), b'"01:02:03"'),
        (IsoAccentDateTime(2020, 1, 2, 3, 4, 5), b'"2020-01-02T03:04:05"'),
    ],
)
def test_date_subclasses_are_written_by_their_value(value: Any, expected: bytes) -> None:
    """An overridden isoformat() is not trusted: a date subclass is written by its value."""
    assert expected == canonical_json(value)
    assert fingerprint(expected.decode("ascii")[1:-1]) == fingerprint(value)


@pytest.mark.parametrize("spec", [datetime.date, datetime.datetime, datetime.time, decimal.Decimal])
def test_mocks_of_projected_types_raise_a_type_error(spec: type) -> None:
    """A Mock(spec=date) claims the type but is none: a FingerprintTypeError, no crash."""
    out = run_isolated(
        f"""
        import datetime, decimal, unittest.mock
        from retrysafe import canonical_json, FingerprintTypeError
        for _ in range(50):
            try:
                canonical_json(unittest.mock.Mock(spec={spec.__module__}.{spec.__qualname__}))
            except FingerprintTypeError as e:
                message = str(e)
        print(message)
        """
    )
    assert "cannot canonicalize the value at args" in out
    with pytest.raises(FingerprintTypeError):
        canonical_json(unittest.mock.Mock(spec=spec))


def test_dict_values_freed_while_a_long_key_is_hashed_without_the_gil() -> None:
    """A cached layout re-reads its values after hashing a 300 KB key with the GIL released."""
    run_isolated(
        """
        import threading
        from retrysafe import fingerprint
        key = "a" * 300000
        for _ in range(3):
            fingerprint({key: 0, "b": 0})
        d = {key: 0, "b": [0] * 8}
        expected = fingerprint(dict(d))
        stop = False
        def churn():
            while not stop:
                d["b"] = [0] * 8
        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(300):
                assert expected == fingerprint(d)
        finally:
            stop = True
            t.join()
        """
    )


def test_dict_values_freed_while_a_big_int_is_formatted() -> None:
    """Formatting a 300,000-digit int (Python code, the GIL released) never frees a value read."""
    run_isolated(
        """
        import sys, threading
        from retrysafe import fingerprint, FingerprintError
        sys.set_int_max_str_digits(0)
        for _ in range(3):
            fingerprint({"a": 0, "b": 0})
        d = {"a": 10**300000, "b": [0] * 8}
        stop = False
        def churn():
            while not stop:
                d["b"] = [0] * 8
        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(10):
                fingerprint(d)
        finally:
            stop = True
            t.join()
        """
    )


class Code(int):
    def __str__(self) -> str:
        return "EVIL"

    def __repr__(self) -> str:
        return "EVIL"

    def __int__(self) -> int:
        return 99

    def __index__(self) -> int:
        return 98


def test_int_subclass_keys_and_values_are_their_integer_value() -> None:
    """An int subclass is its integer value, as key and as value, whatever its dunders say."""
    assert b'{"5":5}' == canonical_json({Code(5): Code(5)})
    assert canonical_json({"5": [2**80]}) == canonical_json({Code(5): [Code(2**80)]})


class Interrupting:
    @property
    def __class__(self) -> Any:  # type: ignore[override]
        raise KeyboardInterrupt


class Exiting(decimal.Decimal):
    def __str__(self) -> str:
        raise SystemExit(3)


class InterruptingKey(enum.Enum):
    A = 1

    @property
    def value(self) -> Any:  # type: ignore[override]
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("value", "raised"),
    [
        ([Interrupting()], KeyboardInterrupt),
        ({"a": Interrupting()}, KeyboardInterrupt),
        ({InterruptingKey.A: 1}, KeyboardInterrupt),
        ([InterruptingKey.A], KeyboardInterrupt),
    ],
)
def test_base_exceptions_from_user_code_propagate_unchanged(
    value: Any, raised: type[BaseException]
) -> None:
    """Ctrl-C and SystemExit raised by user code are never turned into a TypeError."""
    with pytest.raises(raised) as info:
        fingerprint(value)
    assert raised is type(info.value)
    with pytest.raises(raised):
        canonical_json(value)


def test_system_exit_from_a_decimal_subclass_is_not_called() -> None:
    """A Decimal subclass is written by Decimal's own __str__, not an override."""
    assert b'"1.5"' == canonical_json(Exiting("1.50"))


def test_re_entrant_errors_stay_bounded_and_chain_their_cause() -> None:
    """20 nested fingerprint calls give a short message with the cause chained, not 2 MB."""
    depth = [0]

    class Nested:
        def __getattribute__(self, name: str) -> Any:
            depth[0] += 1
            if depth[0] < 20:
                return fingerprint(Nested())
            raise LookupError("the bottom")

    with pytest.raises(FingerprintTypeError) as info:
        fingerprint(Nested())
    assert len(str(info.value)) < 600
    chain, err = 0, info.value.__cause__
    while err is not None:
        chain += 1
        last = err
        err = err.__cause__
    assert isinstance(last, LookupError)
    assert chain >= 19


def test_unbounded_re_entrance_raises_instead_of_crashing() -> None:
    """Re-entrance without end stops with an error, in the main thread and a small stack."""
    out = run_isolated(
        """
        import threading
        from retrysafe import fingerprint

        class Forever:
            def __getattribute__(self, name):
                return fingerprint(Forever())

        def attempt():
            try:
                fingerprint(Forever())
            except Exception as e:
                print(type(e).__name__)

        attempt()
        threading.stack_size(256 * 1024)
        t = threading.Thread(target=attempt)
        t.start()
        t.join()
        """
    )
    assert 2 == len(out.split())


def test_call_keyer_survives_kwargs_changed_by_a_keyword_name() -> None:
    """A keyword name whose __eq__ changes kwargs gives a key or None, never a panic."""

    class Sneaky(str):
        def __eq__(self, other: object) -> bool:
            kwargs.clear()
            kwargs.update({f"k{i}": [i] * 100 for i in range(50)})
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    keyer = CallKeyer(
        b"head",
        ["a", "b"],
        [inspect.Parameter.empty, 1],
        2,
        0,
        empty=inspect.Parameter.empty,
    )
    kwargs: dict[Any, Any] = {"a": 1, Sneaky("b"): [2] * 100}
    result = keyer.key((), kwargs)
    assert result is None or isinstance(result, str)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1E+999999999999999999", b'"1e+999999999999999999"'),
        ("1E-999999999999999999", b'"1e-999999999999999999"'),
        ("12.5E-999999999999999999", b'"1.25e-999999999999999998"'),
    ],
)
def test_decimal_exponents_near_their_limits_stay_exact(text: str, expected: bytes) -> None:
    """Decimal exponents near ±10^18 (and their arithmetic) never overflow into another number."""
    context = decimal.Context(Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
    assert expected == canonical_json(context.create_decimal(text))


def test_lone_surrogate_in_scope_is_a_fingerprint_value_error() -> None:
    """A lone surrogate in scope= is a FingerprintValueError naming scope, as in args."""
    with pytest.raises(FingerprintValueError) as info:
        IdempKey.for_args(scope="charge:\ud800", args={})
    assert "scope" == info.value.path


def test_ints_past_the_str_digit_limit_raise_a_value_error() -> None:
    """An int with more digits than Python converts is a FingerprintValueError naming its path."""
    limit = sys.get_int_max_str_digits()
    if limit == 0:
        pytest.skip("no int digit limit in this interpreter")
    with pytest.raises(FingerprintValueError) as info:
        canonical_json({"n": [10 ** (limit + 1)]})
    assert "args['n'][0]" == info.value.path
    assert isinstance(info.value.__cause__, ValueError)
    assert canonical_json(10 ** (limit - 1)) == str(10 ** (limit - 1)).encode()


def test_import_leaves_heavy_modules_unloaded() -> None:
    """`import retrysafe` loads only what the hot path needs: no asyncio, ssl, email, uuid."""
    out = run_isolated(
        """
        import sys
        import retrysafe
        heavy = ["asyncio", "ssl", "email.utils", "hashlib", "uuid", "redis", "trio"]
        print(" ".join(name for name in heavy if name in sys.modules))
        """
    )
    assert "" == out.strip()


def test_interrupts_while_an_error_is_built_are_never_swallowed() -> None:
    """Under a storm of signals whose handler raises KeyboardInterrupt, fingerprinting an
    unsupported value 20,000 times ends each time in FingerprintTypeError or the
    KeyboardInterrupt itself: never a plain TypeError that dropped the interrupt (580-718
    of 20,000 calls did)."""
    out = run_isolated(
        """
        import signal
        from retrysafe import FingerprintTypeError, fingerprint

        armed = False  # the handler raises only while a fingerprint may be running

        def interrupt(signum, frame):
            if armed:
                raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, interrupt)
        ok = interrupted = swallowed = 0
        try:  # the rare types' first import (uuid, decimal...) before the storm
            fingerprint([object()])
        except FingerprintTypeError:
            pass
        signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
        for _ in range(20000):
            try:
                try:
                    armed = True
                    fingerprint({"a": [object()]})
                finally:
                    armed = False
            except FingerprintTypeError:
                ok += 1
            except KeyboardInterrupt:
                interrupted += 1
            except TypeError:
                swallowed += 1
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        print(ok, interrupted, swallowed)
        """
    )
    ok, interrupted, swallowed = map(int, out.split()[-3:])
    assert 0 == swallowed
    assert ok > 0 and interrupted > 0


def test_a_recursion_error_while_an_error_is_built_propagates() -> None:
    """Fingerprinting an unsupported value at every depth up to the recursion limit: the
    caller gets FingerprintTypeError or RecursionError, never a plain TypeError."""
    out = run_isolated(
        """
        import sys
        from retrysafe import FingerprintTypeError, fingerprint

        seen = set()

        def dive(n):
            try:
                fingerprint([object()])
            except FingerprintTypeError:
                seen.add("FingerprintTypeError")
            except RecursionError:
                seen.add("RecursionError")
            except TypeError:
                seen.add("TypeError")
            if n:
                dive(n - 1)

        sys.setrecursionlimit(400)
        try:
            dive(1000)
        except RecursionError:
            pass
        print(" ".join(sorted(seen)))
        """
    )
    assert "TypeError" not in out.split()


def test_an_interrupted_first_import_of_the_rare_types_is_retried() -> None:
    """Interrupts that cut the encoder's first import of uuid, decimal and datetime short,
    again and again, leave nothing broken: once they stop, Enum, date, Decimal and UUID
    values canonicalize (on 3.10 a half-imported module once failed them for good)."""
    out = run_isolated(
        """
        import decimal, signal, sys
        from retrysafe import fingerprint, canonical_json

        assert "uuid" not in sys.modules  # the encoder imports it on first need: cut short

        armed = False

        def interrupt(signum, frame):
            if armed:
                raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
        cut = 0
        for _ in range(300):
            try:
                try:
                    armed = True
                    fingerprint([decimal.Decimal("1.5")])
                finally:
                    armed = False
            except KeyboardInterrupt:
                cut += 1
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        import datetime, enum, uuid

        class Colour(enum.Enum):
            RED = "red"

        print(cut, canonical_json([decimal.Decimal("1.50"), datetime.date(2026, 1, 2),
                                   Colour.RED, uuid.UUID(int=1)]).decode())
        """
    )
    cut, text = out.split(maxsplit=1)
    assert int(cut) > 0
    assert '["1.5","2026-01-02","red","00000000-0000-0000-0000-000000000001"]' == text.strip()
