"""How a shared store turns values into bytes and back: a short header, then the
serializer's bytes (orjson unless told otherwise). Anything without the header is foreign and
reads as a miss, never as a wrong result."""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from .._exceptions import CodecError
from .._log import logger
from ._base import MISS

__all__ = ["HEADER", "Codec", "OrjsonSerializer", "Serializer"]


HEADER = b"rs1:"


class Serializer(Protocol):
    """How values are turned into bytes for a shared store."""

    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class OrjsonSerializer:
    """The default: orjson. JSON types come back as JSON types (a tuple as a list, a datetime
    as its ISO string); pass a serializer of your own (pickle, msgpack) for more."""

    def dumps(self, value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(self, data: bytes) -> Any:
        return orjson.loads(data)


class Codec:
    """Values as ``HEADER + serializer.dumps(value)`` for the store named ``where``."""

    def __init__(self, serializer: Serializer | None, where: str) -> None:
        #: The serializer the user passed (None: orjson), to rebuild the store elsewhere.
        self.given = serializer
        self.serializer: Serializer = serializer or OrjsonSerializer()
        self.where = where
        self._warned = False

    def dump(self, value: Any) -> bytes:
        try:
            return HEADER + bytes(self.serializer.dumps(value))
        except Exception as exc:
            raise CodecError(
                f"cannot serialize a {type(value).__name__} for {self.where}: {exc}"
            ) from exc

    def load(self, data: Any, key: str | None = None) -> Any:
        """The value, or ``MISS`` for nothing or a foreign value (logged once, with ``key``)."""
        if data is None:
            return MISS
        if isinstance(data, memoryview):
            data = bytes(data)
        if not isinstance(data, bytes) or not data.startswith(HEADER):
            self._foreign(key, "it lacks retrysafe's header")
            return MISS
        try:
            return self.serializer.loads(data[len(HEADER) :])
        except Exception as exc:
            self._foreign(key, f"it does not deserialize ({exc})")
            return MISS

    def load_result(self, data: Any, key: str) -> Any:
        """A completed record's stored result; a StoreError naming ``key`` when it is missing
        or unreadable (foreign bytes, bad JSON, nested too deep, NULL): a record is never
        replayed as something it does not hold, and never runs its write again."""
        if isinstance(data, memoryview):
            data = bytes(data)
        if not isinstance(data, bytes) or not data.startswith(HEADER):
            raise CodecError(
                f"the stored result of record {key} in {self.where} is unreadable: "
                + ("it is missing" if data is None else "it lacks retrysafe's header")
            )
        try:
            return self.serializer.loads(data[len(HEADER) :])
        except Exception as exc:
            raise CodecError(
                f"the stored result of record {key} in {self.where} is unreadable: "
                f"it does not deserialize ({type(exc).__name__})"
            ) from exc

    def fence(self, value: Any, key: str) -> int:
        """A record's stored fence as an int; a StoreError naming ``key`` when tampered."""
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        try:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError
            return int(value)
        except ValueError:
            raise CodecError(
                f"the fence of record {key} in {self.where} is not a number: the record was "
                "changed by something other than retrysafe"
            ) from None

    def _foreign(self, key: str | None, why: str) -> None:
        if not self._warned:
            self._warned = True
            under = "" if key is None else f" under {key}"
            logger.warning("retrysafe: ignoring a value%s in %s: %s", under, self.where, why)
