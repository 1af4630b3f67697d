"""Type-checked by mypy (strict), never run: the public API keeps its types."""

from __future__ import annotations

from typing_extensions import assert_type

from retrysafe import IdempKey, canonical_json, fingerprint

assert_type(canonical_json({"a": 1}), bytes)
assert_type(fingerprint({"a": 1}, secret=b"k"), str)
key = IdempKey.for_args(scope="s", args={"a": 1})
assert_type(key, IdempKey)
assert_type(key.hex, str)
assert_type(key.uuid, str)
assert_type(key.scope, "str | None")
assert_type(str(IdempKey.explicit("k")), str)
