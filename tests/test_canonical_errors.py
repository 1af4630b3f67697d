"""Bad input: a clear error that names what is wrong and where, never a crash."""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections.abc import Callable
from typing import Any

import pytest

from retrysafe import (
    FingerprintError,
    FingerprintTypeError,
    FingerprintValueError,
    RetrysafeError,
    canonical_json,
    fingerprint,
)
from retrysafe._native import MAX_DEPTH


def _error(value: Any) -> FingerprintError:
    with pytest.raises(FingerprintError) as info:
        canonical_json(value)
    with pytest.raises(type(info.value)):
        fingerprint(value)
    return info.value


def test_unsupported_object_names_type_and_path() -> None:
    """An unsupported value is a TypeError naming its type and where it sits."""
    err = _error({"items": [1, 2, 3, object()]})
    assert isinstance(err, TypeError)
    assert isinstance(err, RetrysafeError)
    assert "cannot canonicalize <class 'object'> at args['items'][3]" == str(err)
    assert "args['items'][3]" == err.path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_raise_value_error(value: float) -> None:
    """NaN and ±Infinity have no JSON form (orjson would write null)."""
    err = _error({"price": [value]})
    assert isinstance(err, FingerprintValueError)
    assert isinstance(err, ValueError)
    assert "args['price'][0]" == err.path


def test_lone_surrogate_in_value_and_key() -> None:
    """A lone surrogate is an error as a value and as a key, with the same error type."""
    err = _error({"name": "a\ud800b"})
    assert isinstance(err, FingerprintValueError)
    assert "args['name']" == err.path
    err = _error({"outer": {"\udfff": 1}})
    assert isinstance(err, FingerprintValueError)
    assert "lone surrogate" in str(err)


def test_cycles_raise_naming_where_they_close() -> None:
    """A list or dict that contains itself raises instead of recursing forever."""
    loop: list[Any] = [1]
    loop.append(loop)
    err = _error({"a": loop})
    assert "circular reference at args['a'][1]: the value contains itself" == str(err)
    d: dict[str, Any] = {}
    d["self"] = d
    assert "args['self']" == _error(d).path


def test_deep_nesting_raises_without_crashing() -> None:
    """100,000 levels raise a clear error; the limit is the documented MAX_DEPTH."""
    value: Any = []
    for _ in range(100_000):
        value = [value]
    err = _error(value)
    assert f"nesting deeper than {MAX_DEPTH} levels" in str(err)
    ok: Any = "leaf"
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert canonical_json(ok).startswith(b"[" * MAX_DEPTH)


def test_deep_nesting_in_a_small_thread_stack() -> None:
    """The depth limit holds in a thread with a small stack (no native stack overflow)."""
    value: Any = []
    for _ in range(10_000):
        value = {"k": value}
    errors: list[BaseException] = []
    old = threading.stack_size(256 * 1024)
    try:
        t = threading.Thread(target=lambda: errors.append(_error(value)))
        t.start()
        t.join()
    finally:
        threading.stack_size(old)
    assert isinstance(errors[0], FingerprintValueError)
    assert "nesting" in str(errors[0])


@pytest.mark.parametrize(
    ("value", "key_type", "path"),
    [
        ({1.5: "x"}, "float", "args"),
        ({"ok": {(1, 2): "x"}}, "tuple", "args['ok']"),
        ({None: 1}, "NoneType", "args"),
        ({True: 1}, "bool", "args"),
    ],
)
def test_unsupported_key_types(value: Any, key_type: str, path: str) -> None:
    """Keys must be str, int or Enum; a bool, float, tuple or None key is refused."""
    err = _error(value)
    assert isinstance(err, FingerprintTypeError)
    expected = f"cannot canonicalize a dict key of <class '{key_type}'> at {path}"
    assert str(err).startswith(expected)


def test_mixed_keys_that_collide_raise() -> None:
    """`{1: a, "1": b}` would be two members with one name: refused, not silently merged."""
    err = _error({"m": {1: "a", "1": "b"}})
    assert isinstance(err, FingerprintValueError)
    assert "duplicate key <a key> at args['m']" in str(err)


def test_paths_name_keys_only_where_they_are_names() -> None:
    """A key that is a name (a parameter's, a field's) is shown; any other key may be an
    argument's value (an e-mail keying a map, a token) and is shown by its type only."""
    err = _error({"users": {"alice@example.com": [object()]}})
    assert "args['users'][<str key>][0]" == err.path
    assert "alice" not in str(err)
    err = _error({"by_id": {10_000_001: object()}})
    assert "args['by_id'][<int key>]" == err.path


def test_mixed_keys_that_do_not_collide_are_fine() -> None:
    """Int and str keys may share a dict when their strings differ; order is string order."""
    assert b'{"10":1,"9":2,"a":3}' == canonical_json({9: 2, 10: 1, "a": 3})


def test_strict_refuses_integers_beyond_2_53() -> None:
    """strict=True keeps to the I-JSON domain; the default keeps exact digits."""
    assert b"9007199254740993" == canonical_json(2**53 + 1)
    assert b"9007199254740992" == canonical_json(2**53, strict=True)
    for big in (2**53 + 1, -(2**53) - 1, 2**80):
        # In a dict and in lists; repeated, so that the dict's cached layout is used too.
        for value in ({"n": big}, [big], [1, big]):
            for _ in range(3):
                with pytest.raises(FingerprintValueError, match="strict=True"):
                    canonical_json(value, strict=True)


def test_offset_with_seconds_is_refused() -> None:
    """A UTC offset with seconds has no ±HH:MM form."""
    tz = datetime.timezone(datetime.timedelta(hours=1, seconds=30))
    err = _error({"when": datetime.datetime(2024, 1, 1, tzinfo=tz)})
    assert "args['when']" == err.path


def test_error_raised_by_user_code_is_wrapped_with_its_cause() -> None:
    """A property that raises while a dataclass is read becomes a FingerprintError with a cause."""
    import dataclasses

    @dataclasses.dataclass
    class Broken:
        x: int

        def __getattribute__(self, name: str) -> Any:
            if name == "x":
                raise RuntimeError("boom")
            return object.__getattribute__(self, name)

    err = _error({"b": Broken(1)})
    assert isinstance(err.__cause__, RuntimeError)


def test_generators_are_refused_not_consumed() -> None:
    """An iterator is not a list: consuming it would change the caller's state."""
    gen = (i for i in range(3))
    err = _error({"g": gen})
    assert isinstance(err, FingerprintTypeError)
    assert [0, 1, 2] == list(gen)


def test_secret_must_be_bytes() -> None:
    """A str secret is a TypeError, not silently encoded."""
    with pytest.raises(TypeError):
        fingerprint({}, secret="key")  # type: ignore[arg-type]


# User code run mid-encode (here a dataclass field read) that changes the containers being
# written: the encoder re-reads what it had read, or says the dict changed; it never reads
# a freed object.
_HOOKS: list[Callable[[], None]] = []


@dataclasses.dataclass
class _Meddler:
    n: int

    def __getattribute__(self, name: str) -> Any:
        if name == "n":
            while _HOOKS:
                _HOOKS.pop()()
        return object.__getattribute__(self, name)


def _fresh(text: str) -> str:
    return "".join(list(text))  # a new str object, freed once its container drops it


def _warm(make: Callable[[], dict[str, Any]]) -> None:
    for _ in range(3):  # the dict layout is cached from the second sighting on
        canonical_json(make())


def test_value_replaced_by_user_code_is_read_again() -> None:
    _warm(lambda: {"a": 0, "b": "", "c": []})
    d: dict[str, Any] = {"a": _Meddler(1), "b": _fresh("old value"), "c": [1]}
    _HOOKS.append(lambda: d.__setitem__("b", _fresh("new value")))
    assert canonical_json(d) == b'{"a":{"n":1},"b":"new value","c":[1]}'


def test_key_removed_by_user_code_raises() -> None:
    _warm(lambda: {"a": 0, "b": "", "c": []})
    d: dict[str, Any] = {"a": _Meddler(1), "b": _fresh("x"), "c": [1]}
    _HOOKS.append(lambda: d.__delitem__("c"))
    with pytest.raises(FingerprintValueError, match=r"dict at args changed while"):
        canonical_json(d)


def test_list_changed_by_user_code_is_read_afresh() -> None:
    items: list[Any] = [_Meddler(1), _fresh("gone"), _fresh("also gone")]
    _HOOKS.append(lambda: items.__setitem__(slice(1, None), [_fresh("new")]))
    assert canonical_json(items) == b'[{"n":1},"new"]'


def test_container_dropped_by_its_parent_mid_encode_stays_alive() -> None:
    _warm(lambda: {"m": 0, "z": ""})
    parent: dict[str, Any] = {"inner": {"m": _Meddler(1), "z": _fresh("still here")}}
    _HOOKS.append(parent.clear)
    assert canonical_json(parent) == b'{"inner":{"m":{"n":1},"z":"still here"}}'


def _wide(n: int = 40) -> dict[Any, Any]:
    """A dict of more than 32 str keys: written by the encoder's wide-dict path, which
    leaves it to the general one at the first key that is not an exact str."""
    return {f"k{i:03d}": i for i in range(n)}


def test_wide_dicts_with_other_keys_and_bad_members() -> None:
    """Wide dicts behave as narrow ones: a non-str key (first, last) is converted and may
    collide, a str subclass key is its text, a lone surrogate in a key or a value and an
    unsupported value are errors naming where they are, and a value's error names its key."""

    class Name(str):
        pass

    for extra in ({5: "int"}, {Name("k999"): "sub"}):
        for d in ({**extra, **_wide()}, {**_wide(), **extra}):
            expected = {str(k): v for k, v in d.items()}
            assert canonical_json(d) == canonical_json(expected)
    err = _error({"m": {**_wide(), 1: "a", "1": "b"}})
    assert "duplicate key <a key> at args['m']" in str(err)
    err = _error({"m": {**_wide(), "k\udfff": 1}})
    assert isinstance(err, FingerprintValueError)
    assert "lone surrogate" in str(err)
    err = _error({"m": {**_wide(), "k020": "a\ud800b"}})
    assert "args['m']['k020']" == err.path
    err = _error({"m": {**_wide(), "k033": [object()]}})
    assert "args['m']['k033'][0]" == err.path


@pytest.mark.parametrize(
    "bad, message",
    [
        (float("nan"), "NaN"),
        ("a\ud800b", "lone surrogate"),
        (object(), "object"),
        (2**53 + 1, "strict=True"),
        (2**80, "strict=True"),
    ],
    ids=["nan", "surrogate", "object", "int-past-2-53-strict", "big-int-strict"],
)
def test_small_lists_name_their_bad_item_wherever_they_are(bad: Any, message: str) -> None:
    """Lists of up to four scalars are written in place by the item and member loops; one
    they cannot write (last of four, or first) leaves it to the general writer, whose error
    names the item: in a list, in records of one layout and in a wide dict."""
    for small in ([1, "two", 3.5, bad], [bad, None]):
        index = small.index(bad)
        records = [{"id": i, "tags": ["a", "b"]} for i in range(3)] + [{"id": 3, "tags": small}]
        cases = [
            ([[1, 2], small], f"args[1][{index}]"),
            ({"records": records}, f"args['records'][3]['tags'][{index}]"),
            ({**_wide(), "k020": small}, f"args['k020'][{index}]"),
        ]
        for value, path in cases:
            with pytest.raises(FingerprintError, match=message) as info:
                canonical_json(value, strict=True)
            assert path == info.value.path


def test_small_lists_count_as_a_level_of_nesting() -> None:
    """A list of scalars written in place is a level of its own: at the limit it raises as
    any list does, in each loop that writes such lists (an empty list, written as `[]`
    wherever it is, is not a level)."""
    for leaf in ([1, 2], ["a"]):
        for wrap in (lambda v: [v], lambda v: {"k": v}, lambda v: {**_wide(), "k005": v}):
            ok: Any = wrap(leaf)
            for _ in range(MAX_DEPTH - 2):
                ok = [ok]
            assert canonical_json(ok).startswith(b"[" * (MAX_DEPTH - 2))
            with pytest.raises(FingerprintValueError, match=f"deeper than {MAX_DEPTH}"):
                canonical_json([ok])
