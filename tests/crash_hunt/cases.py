"""Adversarial cases for the native encoder: each must end without crashing the interpreter.

Run one with ``python tests/crash_hunt/cases.py NAME``; ``hunt.py`` runs every case in a
subprocess of its own, on every Python version and in ``-X dev`` with ``PYTHONMALLOC=debug``,
so that a crash is caught and named by its signal. A case passes when it returns: an
error that names the value (``FingerprintError``) is a fine outcome for hostile input, and
where the canonical form is known the case checks it. Every loop is bounded in count and
time. Only the standard library and retrysafe are used, so any interpreter with anyio and
orjson can run them.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import gc
import json
import mmap
import sys
import threading
import time
import unittest.mock
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from retrysafe import FingerprintError, IdempKey, cache_tool, canonical_json, fingerprint
from retrysafe._native import CallKeyer

CASES: dict[str, Callable[[], None]] = {}

#: Seconds a threaded case keeps its threads busy.
BUSY = 0.6


def case(fn: Callable[[], None]) -> Callable[[], None]:
    CASES[fn.__name__] = fn
    return fn


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs `fn`; a FingerprintError is an acceptable answer to hostile input (None)."""
    try:
        return fn(*args, **kwargs)
    except FingerprintError as e:
        assert len(str(e)) < 2000, f"unbounded message: {len(str(e))} characters"
        return None


def both(value: Any) -> tuple[bytes | None, str | None]:
    """canonical_json and fingerprint of `value`, each None on a FingerprintError."""
    return attempt(canonical_json, value), attempt(fingerprint, value)


def utf16_key(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def reference(value: Any) -> str:
    """RFC 8785 text of plain JSON values (str keys, str, int, list, dict, bool, None)."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: utf16_key(kv[0]))
        return "{" + ",".join(f"{reference(k)}:{reference(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(reference(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def check(value: Any) -> None:
    """The value's canonical JSON equals the reference, and its fingerprint agrees."""
    expected = reference(value).encode()
    assert expected == canonical_json(value), (expected[:200], canonical_json(value)[:200])


def churn(body: Callable[[], None], seconds: float = BUSY) -> Callable[[], None]:
    """Starts a thread running `body` in a loop for `seconds`; returns a function that stops it."""
    stop = threading.Event()
    deadline = time.monotonic() + seconds * 4

    def loop() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            body()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join()

    return stopper


def for_a_while(seconds: float = BUSY, at_least: int = 200) -> Iterator[int]:
    """Counts for `seconds` and at least `at_least` steps (bounded: 20 x `seconds` at most)."""
    start = time.monotonic()
    i = 0
    while True:
        elapsed = time.monotonic() - start
        if (elapsed >= seconds and i >= at_least) or elapsed >= 20 * seconds:
            return
        yield i
        i += 1


def warm(*layouts: dict[str, Any]) -> None:
    """Calls fingerprint on each layout three times, so that it is cached."""
    for _ in range(3):
        for layout in layouts:
            attempt(fingerprint, layout)


# -- projected types with hostile methods, and test doubles ------------------------------


def _iso_results() -> list[Any]:
    return [12345, b"`" * 64, None, "é" * 12, "x" * 100_000, 2**200, "", object()]


@case
def iso_overrides() -> None:
    for result in _iso_results():

        class D(datetime.date):
            def isoformat(self, *a: Any, _r: Any = result) -> Any:  # type: ignore[override]
                return _r

        class DT(datetime.datetime):
            def isoformat(self, *a: Any, _r: Any = result) -> Any:  # type: ignore[override]
                return _r

        class T(datetime.time):
            def isoformat(self, *a: Any, _r: Any = result) -> Any:  # type: ignore[override]
                return _r

        assert b'"2020-01-02"' == canonical_json(D(2020, 1, 2))
        assert b'"2020-01-02T03:04:05Z"' == canonical_json(
            DT(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        )
        assert b'"03:04:05"' == canonical_json(T(3, 4, 5))
        both({"when": [D(2020, 1, 2), DT(2020, 1, 2), T(1)]})


class HostileOffset(datetime.tzinfo):
    def __init__(self, result: Any) -> None:
        self.result = result

    def utcoffset(self, dt: Any) -> Any:
        return self.result

    def dst(self, dt: Any) -> Any:
        return None

    def tzname(self, dt: Any) -> Any:
        return "é" * 40


@case
def hostile_tzinfo() -> None:
    for result in [
        datetime.timedelta(hours=5, seconds=7),
        datetime.timedelta(0),
        datetime.timedelta(hours=-23, minutes=-59),
        datetime.timedelta(microseconds=1),
        "nope",
        None,
    ]:
        both([datetime.datetime(2020, 1, 2, tzinfo=HostileOffset(result))])
        both([datetime.time(1, 2, tzinfo=HostileOffset(result))])


@case
def mocks_of_projected_types() -> None:
    specs: list[Any] = [
        datetime.date,
        datetime.datetime,
        datetime.time,
        decimal.Decimal,
        uuid.UUID,
        enum.Enum,
        int,
        str,
        float,
        dict,
        list,
        tuple,
        bytes,
        set,
    ]
    makers = [unittest.mock.Mock, unittest.mock.MagicMock, unittest.mock.NonCallableMock]
    for _ in range(20):
        for spec in specs:
            for make in makers:
                for shape in (lambda m: m, lambda m: [m], lambda m: {"k": m}, lambda m: {m: 1}):
                    both(shape(make(spec=spec)))
                both(make(spec_set=spec))


class _Hostile:
    """Every dunder retrysafe might call raises or lies."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("__class__", "__dict__"):
            return object.__getattribute__(self, name)
        raise AttributeError(name)


@case
def objects_whose_attributes_fail() -> None:
    for _ in range(200):
        both([_Hostile(), {"a": _Hostile()}])


# -- subclasses of the common types -------------------------------------------------------


@case
def int_subclasses() -> None:
    class Code(int):
        def __str__(self) -> str:
            return "EVIL"

        __repr__ = __str__

        def __int__(self) -> int:
            return 99

        def __index__(self) -> int:
            return 98

        def __format__(self, spec: str) -> str:
            return "F"

    class Raising(int):
        def __int__(self) -> int:
            raise RuntimeError("int")

        def __index__(self) -> int:
            raise RuntimeError("index")

        def __str__(self) -> str:
            raise RuntimeError("str")

    for value in [0, 1, -1, 2**30, -(2**30), 2**53 + 1, 2**63, -(2**63) - 1, 2**200, -(10**300)]:
        expected = canonical_json({str(value): [value]})
        assert expected == canonical_json({Code(value): [Code(value)]})
        assert expected == canonical_json({Raising(value): [Raising(value)]})
        assert attempt(canonical_json, Code(value), strict=True) in (None, str(value).encode())


@case
def str_subclasses() -> None:
    class S(str):
        def __str__(self) -> str:
            return "EVIL"

        def __eq__(self, other: object) -> bool:
            return False

        def __hash__(self) -> int:
            return 1

        def __len__(self) -> int:
            return 10**9

        def __getitem__(self, i: Any) -> Any:
            raise RuntimeError("no")

        def encode(self, *a: Any) -> bytes:  # type: ignore[override]
            return b"EVIL"

    texts = ["", "a", "é" * 3, "\u20ac" * 20, "\U0001f600" * 5, "x" * 5000, 'a\u0000b"\\']
    for text in texts:
        assert canonical_json({text: [text]}) == canonical_json({S(text): [S(text)]})
    both(S("a\ud800"))
    both({S("\udfff"): 1})


@case
def float_subclasses() -> None:
    class F(float):
        def __float__(self) -> float:
            return 1.0

        def __repr__(self) -> str:
            return "EVIL"

        __str__ = __repr__

    for v in [0.0, -0.0, 0.1, 1e21, 1e-7, 16.990000000000002, 2.5e-308, 1.7976931348623157e308]:
        assert canonical_json([v]) == canonical_json([F(v)])
    both([F("nan"), F("inf")])


@case
def container_subclasses() -> None:
    class L(list):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            raise RuntimeError("iter")

        def __len__(self) -> int:
            return 10**6

        def __getitem__(self, i: Any) -> Any:
            return "EVIL"

    class T(tuple):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            raise RuntimeError("iter")

        def __getitem__(self, i: Any) -> Any:
            return "EVIL"

        def __len__(self) -> int:
            return 0

    class D(dict):  # type: ignore[type-arg]
        def keys(self) -> Any:
            raise RuntimeError("keys")

        def items(self) -> Any:
            raise RuntimeError("items")

        def __iter__(self) -> Any:
            raise RuntimeError("iter")

        def __len__(self) -> int:
            return 0

        def __getitem__(self, k: Any) -> Any:
            return "EVIL"

    for n in [0, 1, 7, 33, 1000]:
        items = list(range(n))
        assert canonical_json(items) == canonical_json(L(items))
        assert canonical_json(items) == canonical_json(T(items))
        mapping = {f"k{i}": i for i in range(n)}
        for _ in range(3):
            assert canonical_json(mapping) == canonical_json(D(mapping))


# -- user code that changes what is being written ----------------------------------------


@case
def dict_changed_by_its_keys() -> None:
    for action in ("clear", "grow", "delete", "replace"):
        target: dict[Any, Any] = {}

        class K(enum.Enum):
            A = "a"

            @property
            def value(self) -> Any:  # type: ignore[override]
                if action == "clear":
                    target.clear()
                elif action == "grow":
                    target.update({f"g{i}": [i] * 10 for i in range(100)})
                elif action == "delete":
                    target.pop("z", None)
                else:
                    target["z"] = [0] * 50
                gc.collect()
                return "a"

        for _ in range(20):
            target.clear()
            target.update({K.A: [1] * 10, "z": [2] * 10, "y": "x" * 3000})
            both(target)


def _mutating_values(target: dict[str, Any], action: str) -> Any:
    @dataclasses.dataclass
    class Rec:
        n: int

        def __getattribute__(self, name: str) -> Any:
            if name == "n":
                if action == "clear":
                    target.clear()
                elif action == "replace":
                    for k in list(target):
                        target[k] = [object()] * 3
                elif action == "grow":
                    target.update({f"g{i}": i for i in range(200)})
                elif action == "delete":
                    for k in list(target)[1:]:
                        del target[k]
                gc.collect()
            return object.__getattribute__(self, name)

    return Rec(1)


@case
def dict_changed_by_its_values() -> None:
    for action in ("clear", "replace", "grow", "delete"):
        layout = {"a": 0, "b": 0, "c": 0, "d": 0}
        warm(layout)
        for _ in range(30):
            target: dict[str, Any] = {"a": [1, 2], "b": None, "c": "x" * 20, "d": [3]}
            target["b"] = _mutating_values(target, action)
            both(target)
            target = {"a": [1, 2], "b": None, "c": "x" * 20, "d": [3]}
            target["a"] = _mutating_values(target, action)
            both([target, target])


@case
def list_changed_by_its_items() -> None:
    for action in ("clear", "extend", "replace", "shrink"):
        for _ in range(30):
            target: list[Any] = ["x" * 30, [1, 2], {"a": 1}]

            class E(enum.Enum):
                A = 1

                @property
                def value(self) -> Any:  # type: ignore[override]
                    if action == "clear":
                        target.clear()
                    elif action == "extend":
                        target.extend([[i] * 5 for i in range(1000)])
                    elif action == "replace":
                        for i in range(len(target)):
                            target[i] = {"new": [i] * 10}
                    else:
                        del target[1:]
                    gc.collect()
                    return 1

            target.insert(1, E.A)
            target.append(E.A)
            both(target)


@case
def sets_changed_while_read() -> None:
    class H:
        def __init__(self, owner: set[Any]) -> None:
            self.owner = owner

        def __hash__(self) -> int:
            return id(self) >> 4

        def __eq__(self, other: object) -> bool:
            self.owner.add(H(self.owner))
            return self is other

    for _ in range(50):
        s: set[Any] = {1, "a", (1, 2)}
        s.add(H(s))
        both(s)
        both(frozenset({1, "b", 2.5}))


@case
def finalizers_change_containers() -> None:
    shared: dict[str, Any] = {}

    class Dropper:
        def __del__(self) -> None:
            shared.clear()
            shared.update({f"n{i}": [i] for i in range(50)})

    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and "victim" in shared:
            shared["victim"] = [object()]

    gc.callbacks.append(on_gc)
    try:
        warm({"a": 0, "victim": 0})
        for _ in range(300):
            shared.clear()
            shared.update({"a": [Dropper()], "victim": [Dropper(), [Dropper()]]})
            cycle: list[Any] = [Dropper()]
            cycle.append(cycle)
            del cycle
            both(shared)
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*old)


def _wide(n: int, stem: str = "k") -> dict[str, Any]:
    """A dict of `n` exact str keys (more than a cached layout holds: the wide path, whose
    keys and values are borrowed until a value may run code), common leaves as values."""
    return {
        f"{stem}{i:04d}" if i % 3 else f"{stem}{i}\u00e9": i if i % 2 else "v" * (i % 7)
        for i in range(n)
    }


@case
def wide_dict_changed_by_its_values() -> None:
    # A value that runs code, written first, in the middle or last of 40-120 members; the
    # code clears, replaces, grows or deletes the dict's other items and collects, so that
    # every key and value borrowed before it would be freed unless held.
    for action in ("clear", "replace", "grow", "delete"):
        for n in (40, 120):
            for position in ("k0000", f"k{n // 2:04d}", "k~"):
                for _ in range(10):
                    target = _wide(n)
                    target[position] = _mutating_values(target, action)
                    both(target)

                    class E(enum.Enum):
                        A = 1

                        @property
                        def value(self) -> Any:  # type: ignore[override]
                            for k in list(target):
                                target[k] = ["x" * 40]
                            gc.collect()
                            return 1

                    target = _wide(n)
                    target[position] = E.A
                    both(target)


@case
def wide_dict_finalizers() -> None:
    # Leaves only, but the collector runs often: an allocation by the encoder itself never
    # starts it (a container's value does, held by then), so the dict is written as it was.
    shared = _wide(60)

    class Dropper:
        def __del__(self) -> None:
            shared.clear()

    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        for _ in range(200):
            shared.clear()
            shared.update(_wide(60))
            expected = reference(shared).encode()
            cycle: list[Any] = [Dropper()]
            cycle.append(cycle)
            del cycle
            assert canonical_json(shared) == expected
            shared["zz"] = [Dropper(), {"a": [Dropper()]}]
            both(shared)
    finally:
        gc.set_threshold(*old)


@case
def threads_change_wide_dicts() -> None:
    # Another thread replaces values, adds and removes keys while the GIL is switched often;
    # a value that runs bytecode (an Enum's value, a huge int's _pylong on 3.12+) lets it
    # run in the middle of the members, after which the ones still to write must be held.
    sys.set_int_max_str_digits(0)
    huge_text = "t" * 300_000
    huge_int = 10**270_000
    sys.setswitchinterval(1e-4)

    class Slow(enum.Enum):
        A = 1

        @property
        def value(self) -> Any:  # type: ignore[override]
            return sum(range(2000)) * 0 + 1  # bytecode: the GIL may pass to the other thread

    for big in (huge_text, huge_int, [1] * 5, Slow.A):
        d = _wide(80)
        d["k0040"] = big

        def change(d: dict[str, Any] = d) -> None:
            # Fresh objects each time: the ones they replace are freed at once.
            for i in range(41, 80, 2):
                d[f"k{i:04d}"] = [object()] * 2
                d[f"k{i:04d}"] = str(i) + "x"
            d.pop("k0002", None)
            d["k0002"] = "v"
            d["new"] = [0]
            del d["new"]

        stop = churn(change)
        try:
            for _ in for_a_while(BUSY / 3, 20):
                attempt(fingerprint, d)
                attempt(canonical_json, d)
        finally:
            stop()


# -- threads changing containers while another encodes ------------------------------------


@case
def threads_replace_values_of_cached_layouts() -> None:
    # "a" sorts first: its long prefix (or huge int) is hashed with the GIL released before
    # "b"'s value, read earlier, is written. The values are replaced by equal ones, so every
    # digest must be the same.
    long_key = "a" * 300_000
    sys.set_int_max_str_digits(0)
    huge = 10**270_000  # past the 256 KiB of digits at which the GIL is released
    layouts: list[tuple[dict[str, Any], int]] = [
        ({long_key: 0, "b": [0] * 8}, 200),
        ({long_key: [1], "b": {"c": [0] * 8}}, 200),
        ({"a": huge, "b": [0] * 8}, 3),
    ]
    warm({long_key: 0, "b": 0}, {"a": 0, "b": 0})
    sys.setswitchinterval(1e-4)  # the GIL goes back and forth often
    for d, at_least in layouts:
        expected = fingerprint(dict(d))
        value = d["b"]
        stop = churn(lambda d=d, value=value: d.__setitem__("b", json.loads(json.dumps(value))))
        try:
            for _ in for_a_while(BUSY / 2, at_least):
                assert expected == fingerprint(d)
        finally:
            stop()


@case
def threads_change_keys_of_cached_layouts() -> None:
    long_key = "a" * 300_000
    d: dict[str, Any] = {long_key: 1, "b": [1] * 8, "c": "x"}
    warm(dict(d))

    def change() -> None:
        d.pop("c", None)
        d["c"] = [object()]
        d["z"] = 1
        del d["z"]

    stop = churn(change)
    try:
        for _ in for_a_while(BUSY / 2):
            attempt(fingerprint, d)
    finally:
        stop()


@case
def threads_replace_list_items() -> None:
    sys.set_int_max_str_digits(0)
    items: list[Any] = [10**150_000, [1, 2], "x" * 10, {"a": 1}]

    def change() -> None:
        items[1] = [object(), 3]
        items[3] = {"b": [2] * 4}
        items.append(1)
        del items[4:]

    stop = churn(change)
    try:
        for _ in for_a_while(BUSY / 2):
            attempt(fingerprint, items)
    finally:
        stop()


@case
def threads_with_a_tiny_switch_interval() -> None:
    sys.setswitchinterval(1e-6)

    class V(enum.Enum):
        A = "a"

    @dataclasses.dataclass
    class Rec:
        name: str
        tags: list[str]

    d: dict[str, Any] = {
        "a": V.A,
        "b": Rec("n", ["t"]),
        "c": [V.A] * 5,
        "d": decimal.Decimal("1.5"),
    }
    warm(dict(d))

    def change() -> None:
        d["b"] = Rec("m", ["u"] * 3)
        d["c"] = [V.A, Rec("x", [])]
        d["d"] = decimal.Decimal("2.25")

    stops = [churn(change), churn(change)]
    try:
        for _ in for_a_while():
            attempt(fingerprint, d)
            attempt(canonical_json, [d, d])
    finally:
        for stop in stops:
            stop()


@case
def threads_fingerprint_shared_values() -> None:
    payload = {"user": "é" * 50, "items": [{"sku": f"s{i}", "n": i, "p": i / 7} for i in range(40)]}
    expected = fingerprint(payload)
    errors: list[str] = []

    def work() -> None:
        for _ in for_a_while(BUSY / 2):
            got = fingerprint(payload)
            if got != expected:
                errors.append(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [] == errors


# -- strings at page boundaries, layouts churned -----------------------------------------


@case
def every_string_kind_at_every_length() -> None:
    alphabets = ["a", "\u00e9", "\u20ac", "\U0001f600", "a\u00e9", '\n"\\', "\x7f", "\u2028"]
    for rounds in range(8):
        kept = []
        for alphabet in alphabets:
            for n in range(0, 40):
                text = (alphabet * (n + 1))[:n] + str(rounds)[:0]
                # Slices and joins land strings at many addresses, some at a page's end.
                kept.append(text)
                check({text: [text], "v": text})
        check(kept)


@case
def bytes_at_page_ends() -> None:
    import base64

    with mmap.mmap(-1, mmap.PAGESIZE) as page:
        page[:] = bytes(range(256)) * (mmap.PAGESIZE // 256)
        view = memoryview(page)
        for n in range(0, 48):
            tail = view[mmap.PAGESIZE - n :]
            expected = f'"{base64.b64encode(bytes(tail)).decode()}"'.encode()
            assert expected == canonical_json(tail)
            assert expected == canonical_json(bytearray(tail))
            tail.release()
        strided = view[::3]
        attempt(canonical_json, strided)
        strided.release()
        view.release()
    released = memoryview(b"abc")
    released.release()
    both(released)


@case
def layout_cache_churn() -> None:
    for round_ in range(60):
        for n in (1, 2, 5, 17, 32, 33):
            keys = [f"key{round_}_{i}" + "x" * (i % 20) for i in range(n)]
            for _ in range(3):
                d = {k: [i, k] for i, k in enumerate(keys)}
                check(d)
                check([d, dict(reversed(list(d.items())))])
            del keys, d
        gc.collect()


# -- depth, stacks and re-entrance --------------------------------------------------------


def _nest(kind: str, depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        if kind == "list":
            value = [value]
        elif kind == "dict":
            value = {"k": value}
        elif kind == "tuple":
            value = (value,)
        elif kind == "mixed":
            value = {"a": [(value,)]}
    return value


@case
def deep_nesting_in_small_stacks() -> None:
    # Built and freed in the main thread: CPython itself cannot free a dict nested 1,000 deep
    # in a 64 KiB stack (3.13 crashes there with no retrysafe involved). The small threads
    # only encode.
    values = [
        _nest(kind, depth)
        for kind in ("list", "dict", "tuple", "mixed")
        for depth in (10, 100, 250, 256, 1000, 5000)
    ]
    results: list[str] = []

    def work() -> None:
        for value in values:
            both(value)
        results.append("done")

    for size in (64 * 1024, 128 * 1024, 256 * 1024, 1024 * 1024):
        threading.stack_size(size)
        t = threading.Thread(target=work)
        t.start()
        t.join()
    threading.stack_size(0)
    work()
    assert 5 == len(results)


@case
def re_entrance() -> None:
    def make(limit: int | None) -> type:
        depth = [0]

        class Nested:
            def __getattribute__(self, name: str) -> Any:
                depth[0] += 1
                if limit is None or depth[0] < limit:
                    return fingerprint([Nested()])
                raise LookupError("bottom")

        return Nested

    def work() -> None:
        for limit in (2, 20, 200, None):
            both(make(limit)())

    for size in (256 * 1024, 1024 * 1024):
        threading.stack_size(size)
        t = threading.Thread(target=work)
        t.start()
        t.join()
    threading.stack_size(0)
    work()


@case
def base_exceptions_propagate() -> None:
    for raised in (KeyboardInterrupt, SystemExit, GeneratorExit):

        class Prop:
            @property
            def __class__(self) -> Any:  # type: ignore[override]
                raise raised

        class Val(enum.Enum):
            A = 1

            @property
            def value(self) -> Any:  # type: ignore[override]
                raise raised

        class It(set):  # type: ignore[type-arg]
            def __iter__(self) -> Any:
                raise raised

        for value in ([Prop()], {"a": Prop()}, {Val.A: 1}, [Val.A], It({1})):
            for fn in (canonical_json, fingerprint):
                try:
                    fn(value)
                except raised:
                    pass
                else:
                    raise AssertionError(f"{raised.__name__} did not propagate")


# -- the call keyer, decorated tools, keys ------------------------------------------------


@case
def call_keyer_with_hostile_keywords() -> None:
    import inspect

    empty = inspect.Parameter.empty
    keyer = CallKeyer(b"h", ["a", "b", "c"], [empty, 1, 2], 3, 0, empty=empty)
    for _ in range(200):
        kwargs: dict[Any, Any] = {}

        class Sneaky(str):
            def __eq__(self, other: object) -> bool:
                kwargs.clear()
                kwargs.update({f"z{i}": [i] * 20 for i in range(30)})
                gc.collect()
                return str.__eq__(self, other)

            __hash__ = str.__hash__

        kwargs.update({"a": [1] * 10, Sneaky("b"): [object()], Sneaky("c"): {"x": 1}})
        result = attempt(keyer.key, (), kwargs)
        assert result is None or isinstance(result, str)


@case
def cached_tool_with_mutating_arguments() -> None:
    @cache_tool(ttl_seconds=60, max_size=64)
    def lookup(query: dict[str, Any], page: int = 1) -> int:
        return len(query)

    query: dict[str, Any] = {"q": "x", "filters": ["a"] * 5}
    warm(query)

    def change() -> None:
        query["filters"] = ["b"] * 6
        query["q"] = "y" * 40

    stop = churn(change)
    try:
        for _ in for_a_while(BUSY / 2):
            attempt(lookup, query, page=2)
            attempt(lookup, query=query)
    finally:
        stop()


@case
def idempotency_keys_from_hostile_scopes() -> None:
    class S(str):
        def __str__(self) -> str:
            return "EVIL"

    for scope in ["a\ud800", S("charge:1"), "é" * 1000, "x" * 300_000]:
        try:
            IdempKey.for_args(scope=scope, args={"a": 1})
        except (FingerprintError, ValueError, TypeError):
            pass
    for n in (0, 1, 63, 64, 65, 1000):
        fingerprint({"a": 1}, secret=b"s" * n)


# -- numbers ---------------------------------------------------------------------------------


@case
def big_ints_near_the_digit_limit() -> None:
    limit = sys.get_int_max_str_digits()
    for digits in (limit - 1, limit, limit + 1, 20_000):
        both([10 ** max(digits, 1) - 1, -(10 ** max(digits, 1))])
    sys.set_int_max_str_digits(0)
    value = 10**100_000 + 7
    assert str(value).encode() == canonical_json(value)
    assert attempt(canonical_json, value, strict=True) is None


@case
def decimals_and_uuids_with_hostile_methods() -> None:
    class Dd(decimal.Decimal):
        def __str__(self) -> str:
            return "1E9223372036854775807"

        def as_tuple(self) -> Any:
            raise RuntimeError("no")

    class U(uuid.UUID):
        def __str__(self) -> str:
            return "é" * 40

    assert b'"1.5"' == canonical_json(Dd("1.50"))
    u = uuid.UUID(int=2**100)
    assert canonical_json(str(u)) == canonical_json(U(int=2**100))
    context = decimal.Context(Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, prec=5)
    for text in ("1E+999999999999999999", "-9.9999E-999999999999999999", "0E-100", "NaN", "-Inf"):
        both(context.create_decimal(text))


@case
def hostile_reprs_in_error_paths() -> None:
    class K(str):
        def __repr__(self) -> str:
            return "r" * 1_000_000

    class Boom(str):
        def __repr__(self) -> str:
            raise RuntimeError("repr")

    for key in (K("a" * 500_000), Boom("b"), "c" * 300_000):
        try:
            canonical_json({key: {key: object()}})
        except FingerprintError as e:
            assert len(str(e)) < 2000
        else:
            raise AssertionError("an object() value must not canonicalize")


def main() -> None:
    names = sys.argv[1:]
    if names == ["--list"]:
        print("\n".join(CASES))
        return
    for name in names:
        CASES[name]()
        print(f"{name}: ok", flush=True)


if __name__ == "__main__":
    main()
